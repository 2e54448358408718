"""Checkpoints that a run can resume from exactly: weights, optimizer, schedule, RNG and step.

Layout: ``<output_dir>/checkpoints/step-000050/`` holds the model as a Hugging Face folder
(``model/``), the optimizer's tensors as ``torch.distributed.checkpoint`` shards (``optimizer/``,
one file per rank that wrote it, readable at any world size) and ``trainer_state.pt`` (schedule,
RNG, step, ... written by rank 0). A checkpoint is written to a temporary folder and renamed when
complete, so an interrupted save never leaves a checkpoint that looks valid. Weights that are not
finite are never published: a checkpoint is always a state worth resuming from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from alignflow.models.saving import METADATA_FILE, save_model
from alignflow.runtime import distributed
from alignflow.runtime.optimizer_state import save_optimizer_state
from alignflow.runtime.state_io import fault_point, load_state, save_state
from alignflow.trainers.data_parallel import DataParallelModel

STATE_FILE, OPTIMIZER_DIR = "trainer_state.pt", "optimizer"


class CheckpointError(ValueError):
    """A checkpoint that must not be written or cannot be read; the message says what to do."""


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Published checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file()) if root.is_dir() else []


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    done = complete_checkpoints(output_dir)
    return done[-1] if done else None


def previous_checkpoint(ckpt: Path) -> Path | None:
    older = [p for p in complete_checkpoints(ckpt.parent.parent) if p.name < ckpt.name]
    return older[-1] if older else None


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    *,
    net: DataParallelModel,
    optimizer: torch.optim.Optimizer,
    tokenizer,
    state: dict[str, Any],
    metadata: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Every rank calls this (the weights are gathered and the optimizer shards written collectively);
    rank 0 writes the model folder and the state, and publishes the checkpoint."""
    bad = net.non_finite()
    if bad:
        last = latest_checkpoint(output_dir)
        raise CheckpointError(f"not saving step {step}: {len(bad)} weight tensors are not finite (e.g. {bad[0]}); "
                              f"the last good checkpoint is {last or 'none (start again)'}")
    root = checkpoint_root(output_dir)
    final = root / f"step-{step:06d}"
    staging = root / f".step-{step:06d}.tmp"
    lead = distributed.rank() == 0
    if lead:
        for stale in root.glob(".step-*.tmp"):  # left by a save that was killed
            shutil.rmtree(stale, ignore_errors=True)
    net.write(lambda model: save_model(model, tokenizer, staging / "model", metadata))
    fault_point(f"checkpoint:{step}")
    save_optimizer_state(net.root, optimizer, staging / OPTIMIZER_DIR)
    if lead:
        # LoRA (one rank): the merged folder above is for users; resuming needs the adapter weights themselves.
        model = net.model
        trainable = {k: v for k, v in model.state_dict().items() if "lora_" in k} if hasattr(model, "peft_config") \
            else None
        save_state({**state, "step": step, "lora_state": trainable}, staging / STATE_FILE)
        publish_checkpoint(staging, final, keep)
    distributed.barrier()
    return final


def publish_checkpoint(staging: Path, final: Path, keep: int) -> Path:
    """Rename a completely written checkpoint into place and keep only the newest ``keep``."""
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    older = sorted(p for p in final.parent.glob("step-*") if p != final)
    for old in older[: max(len(older) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def damaged_advice(ckpt: Path) -> str:
    """What to do about an unreadable checkpoint: fall back to the previous one, or start again."""
    previous = previous_checkpoint(ckpt)
    fallback = f"the previous complete checkpoint is {previous}" if previous else "there is no previous checkpoint"
    return f"delete {ckpt} to resume from the one before ({fallback}), or rerun with --set resume=false"


def load_checkpoint_state(path: str | Path) -> dict[str, Any]:
    """``trainer_state.pt`` of a checkpoint folder, loaded with ``weights_only=True``."""
    ckpt = Path(path)
    return load_state(ckpt / STATE_FILE, advice=damaged_advice(ckpt))


def checkpoint_config(ckpt: Path, model_folder: str = "model") -> dict[str, Any] | None:
    """The run config a checkpoint was written under (from the metadata of its ``model_folder``), if recorded."""
    meta = ckpt / model_folder / METADATA_FILE
    try:
        return json.loads(meta.read_text()).get("config") if meta.is_file() else None
    except json.JSONDecodeError:
        raise CheckpointError(f"{meta} is corrupt (not JSON); {damaged_advice(ckpt)}") from None

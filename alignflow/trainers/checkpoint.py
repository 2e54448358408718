"""Checkpoints that a run can resume from exactly: weights, optimizer, schedule, RNG and step.

Layout: ``<output_dir>/checkpoints/step-000050/`` holds the model as a Hugging Face folder
(``model/``) plus ``trainer_state.pt``. A checkpoint is written to a temporary folder and renamed
when complete, so an interrupted save never leaves a checkpoint that looks valid.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from alignflow.models.saving import save_model

STATE_FILE = "trainer_state.pt"


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    root = checkpoint_root(output_dir)
    done = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file()) if root.is_dir() else []
    return done[-1] if done else None


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    *,
    model,
    tokenizer,
    state: dict[str, Any],
    metadata: dict[str, Any],
    keep: int = 2,
) -> Path:
    root = checkpoint_root(output_dir)
    final = root / f"step-{step:06d}"
    staging = root / f".step-{step:06d}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    save_model(model, tokenizer, staging / "model", metadata)
    # LoRA: the merged folder above is for users; resuming needs the adapter weights themselves.
    trainable = {k: v for k, v in model.state_dict().items() if "lora_" in k} if hasattr(model, "peft_config") else None
    torch.save({**state, "step": step, "lora_state": trainable}, staging / STATE_FILE)
    return publish_checkpoint(staging, final, keep)


def publish_checkpoint(staging: Path, final: Path, keep: int) -> Path:
    """Rename a completely written checkpoint into place and keep only the newest ``keep``."""
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    older = sorted(p for p in final.parent.glob("step-*") if p != final)
    for old in older[: max(len(older) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint_state(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)

"""The training engine: one model being trained on one rank, sharded with FSDP2 over several.

It owns the forward module (:class:`~alignflow.models.forward.HeadAtPositions` over the Hugging
Face model), the optimizer and the LR schedule, and how they are saved:

* one process: the plain module, nothing sharded;
* several ranks (a torch.distributed group is up): FSDP2 ``fully_shard`` on every transformer
  block and on the root, with a bf16 ``MixedPrecisionPolicy`` when the model trains in bf16.
  FSDP averages gradients over the ranks; each rank weighs its loss by its share of the global
  mini-batch times the world size, so the average is the one-process gradient at any world size.

Checkpoints: the weights as a Hugging Face folder (gathered, written by rank 0), the optimizer's
tensors with ``torch.distributed.checkpoint`` (each rank writes its shards; any world size reads
them back), the schedule as JSON. Nothing is unpickled on resume.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

from alignflow.batch import Batch
from alignflow.config.schema import TrainConfig
from alignflow.models.forward import HeadAtPositions
from alignflow.models.loading import transformer_blocks, value_head
from alignflow.models.saving import save_model, write_metadata
from alignflow.runtime import distributed
from alignflow.runtime.optim import build_optimizer, build_scheduler
from alignflow.runtime.optimizer_state import load_optimizer_state, save_optimizer_state
from alignflow.runtime.precision import effective_dtype
from alignflow.workers.base import NonFiniteWeightsError, add_weighted, loss_weight, micro_batch_weights

OPTIMIZER_DIR, SCHEDULE_FILE = "optimizer", "schedule.json"
# LoRA: the folder's weights are merged (for users) and cannot be split back into base + adapter,
# so resuming reads the trainable tensors themselves from here.
TRAINABLE_FILE = "trainable/weights.safetensors"


def is_sharded() -> bool:
    return distributed.world_size() > 1


def shard(module: nn.Module, blocks: nn.ModuleList, dtype: str, device: torch.device, offload: bool) -> None:
    """FSDP2 over ``blocks`` and the root ``module`` (each its own all-gather / reduce-scatter unit)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    mesh = init_device_mesh(device.type, (distributed.world_size(),))
    options = {"mesh": mesh, "offload_policy": CPUOffloadPolicy() if offload else OffloadPolicy()}
    if effective_dtype(dtype, device.type) == "bf16":
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in blocks:
        fully_shard(block, **options)
    fully_shard(module, **options)


class TrainingEngine:
    """``model`` (a Hugging Face model on ``device``) trained through ``module``; see module doc."""

    def __init__(self, model: nn.Module, *, head: str, optim_cfg: TrainConfig, total_updates: int,
                 dtype: str, device: torch.device, head_lr: float | None = None, offload: bool = False) -> None:
        self.model, self.dtype, self.device = model, dtype, device
        self.module = HeadAtPositions(model, head)
        if is_sharded():
            shard(self.module, transformer_blocks(model), dtype, device, offload)
        # A fresh value head may train at its own LR (after sharding: it replaces the parameters).
        head_module = value_head(model) if head == "value" and head_lr else None
        self.optimizer = build_optimizer(self.module, optim_cfg, head=head_module, head_lr=head_lr)
        self.scheduler = build_scheduler(self.optimizer, optim_cfg, total_updates)
        self.max_grad_norm = optim_cfg.max_grad_norm

    def step(self) -> dict[str, float]:
        """Clip, step, advance the schedule, clear gradients. A non-finite gradient skips the update
        (the weights stay finite; ``grad_norm`` reports it and the alerts fire); the schedule still
        advances so that it stays aligned with the planned number of updates."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if hasattr(grad_norm, "full_tensor"):  # a DTensor: the norm over every rank's shards
            grad_norm = grad_norm.full_tensor()
        finite = bool(torch.isfinite(grad_norm))
        lr = self.scheduler.get_last_lr()[0]  # the rate this update uses
        if finite:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"grad_norm": float(grad_norm), "lr": lr, "skipped_update_frac": float(not finite)}

    def train_mini_batch(self, mini: Batch, *, micro_batch_size: int, loss_agg_mode: str,
                         loss_fn: Callable[[Batch], tuple[torch.Tensor, dict[str, Any]]]) -> dict[str, float]:
        """One optimizer step over the global mini-batch ``mini``; ``loss_fn(micro) -> (loss, metrics)``.

        This rank trains its part of ``mini`` (the rank-th of ``world_size`` equal consecutive
        chunks) in micro-batches. Each backward is weighted by the micro-batch's share of the whole
        mini-batch, times the world size that FSDP's gradient average divides by (a power of two
        on usual world sizes, so the round trip is exact), so the result is the one-process
        gradient. The metrics are weighted the same way, so their mean over the ranks (what the
        group reports) is the one-process value.
        """
        world = distributed.world_size()
        mine = mini.chunk(world)[distributed.rank()]
        micro_batches = mine.split(micro_batch_size)
        share = loss_weight(mine, loss_agg_mode) / (loss_weight(mini, loss_agg_mode) or 1.0) * world
        stats: dict[str, float] = {}
        for micro, weight in zip(micro_batches, micro_batch_weights(micro_batches, loss_agg_mode)):
            loss, metrics = loss_fn(micro)
            (loss * (weight * share)).backward()
            add_weighted(stats, metrics, weight * share)
        stats.update(self.step())
        return stats

    # ----- weights ----------------------------------------------------------------------------

    def full_state_dict(self, all_ranks: bool = False) -> dict[str, torch.Tensor]:
        """The Hugging Face model's full weights. Sharded, it is a collective (every rank calls it):
        on the CPU for rank 0 only, or on the device for every rank with ``all_ranks``."""
        if not is_sharded():
            return {k: v.detach() for k, v in self.model.state_dict().items()}
        return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True,
                                                                         cpu_offload=not all_ranks))

    def all_finite(self) -> bool:
        """Whether every weight is finite, on every rank (a collective when sharded)."""
        return all_finite(self.module, self.device)

    def save_weights(self, directory: Path, tokenizer, metadata: dict[str, Any]) -> None:
        """The model as a plain Hugging Face folder (LoRA merged), written once (rank 0). Weights
        that are not finite are never written (every rank raises :class:`NonFiniteWeightsError`)."""
        if not self.all_finite():
            raise NonFiniteWeightsError(f"the weights are not finite (the run diverged); {directory} was not saved")
        if not is_sharded():
            save_model(self.model, tokenizer, directory, metadata)
            return
        weights = self.full_state_dict()
        if distributed.rank() == 0:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(directory, state_dict=weights, safe_serialization=True)
            tokenizer.save_pretrained(directory)
            write_metadata(directory, metadata)

    def save(self, directory: Path, tokenizer, metadata: dict[str, Any]) -> None:
        """:meth:`save_weights` plus ``directory/optimizer`` (every rank's shards of the optimizer's
        tensors), ``directory/schedule.json`` and, under LoRA, the unmerged trainable tensors."""
        directory = Path(directory)
        self.save_weights(directory, tokenizer, metadata)
        if hasattr(self.model, "peft_config"):
            weights = self.full_state_dict()  # unmerged, LoRA names; a collective when sharded
            if distributed.rank() == 0:
                trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
                (directory / TRAINABLE_FILE).parent.mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous() for k, v in weights.items() if k in trainable}, directory / TRAINABLE_FILE)
        save_optimizer_state(self.module, self.optimizer, directory / OPTIMIZER_DIR)
        if distributed.rank() == 0:
            (directory / SCHEDULE_FILE).write_text(json.dumps(self.scheduler.state_dict()))
        distributed.barrier()

    def load(self, directory: Path) -> None:
        """Weights, optimizer and schedule exactly as :meth:`save` wrote them, at any world size."""
        directory = Path(directory)
        weights: dict[str, torch.Tensor] = {}
        if hasattr(self.model, "peft_config"):  # the frozen base is as loaded; the adapters come back
            weights = load_file(directory / TRAINABLE_FILE)
            missing = {n for n, p in self.model.named_parameters() if p.requires_grad} - set(weights)
        else:
            for shard_file in sorted(directory.glob("*.safetensors")):
                weights.update(load_file(shard_file))
            tied = {k for k in self.model.state_dict() if k.endswith("lm_head.weight")}
            missing = set(self.model.state_dict()) - set(weights) - tied
        unexpected = set(weights) - set(self.model.state_dict())
        if missing or unexpected:
            raise ValueError(f"{directory} does not match the model: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
        set_model_state_dict(self.model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
        load_optimizer_state(self.module, self.optimizer, directory / OPTIMIZER_DIR,
                             advice="delete this checkpoint to resume from the one before it")
        self.scheduler.load_state_dict(json.loads((directory / SCHEDULE_FILE).read_text()))
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
            group["lr"] = lr  # the groups were built fresh; the schedule knows where it was



def all_finite(module: nn.Module, device: torch.device) -> bool:
    """Whether every parameter of ``module`` is finite, on every rank (a collective when sharded)."""
    local = all(bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all()) for p in module.parameters())
    if not is_sharded():
        return local
    flag = torch.tensor([float(local)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def save_rank_rng(directory: Path, role: str) -> None:
    """This rank's torch RNG state (``directory/<role>-rank<r>.pt``, a tensor: loads without pickle)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"torch": torch.get_rng_state()}, directory / f"{role}-rank{distributed.rank()}.pt")


def load_rank_rng(directory: Path, role: str) -> None:
    """Restore this rank's RNG state when the checkpoint has one for this rank (a run resumed on
    more ranks than it was saved on starts the new ranks' generators from the seed)."""
    path = directory / f"{role}-rank{distributed.rank()}.pt"
    if path.is_file():
        torch.set_rng_state(torch.load(path, weights_only=True)["torch"])

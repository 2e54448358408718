"""The optimizer and learning-rate schedule every trainer and worker builds the same way."""

from __future__ import annotations

import torch
from torch import nn
from transformers import get_scheduler

from alignflow.config.schema import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig, *, head: nn.Module | None = None,
                    head_lr: float | None = None) -> torch.optim.AdamW:
    """AdamW over trainable parameters; no weight decay on biases and norms (1-D tensors). With a
    ``head`` and a ``head_lr`` (a fresh reward or value head), the head's parameters train at that LR."""
    head_ids = {id(p) for p in head.parameters()} if head is not None and head_lr else set()
    groups = []
    for lr, in_group in ((cfg.lr, lambda p: id(p) not in head_ids), (head_lr, lambda p: id(p) in head_ids)):
        params = [p for p in model.parameters() if p.requires_grad and in_group(p)]
        decay, no_decay = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
        groups += [{"params": ps, "weight_decay": wd, "lr": lr}
                   for ps, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)) if ps]
    # fused: one kernel per parameter group; on CPU about 8x faster than foreach for 135M params.
    # Sharded (FSDP2 DTensor) parameters take the foreach path, which supports them everywhere.
    sharded = any(type(p).__name__ == "DTensor" for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                             fused=not sharded, foreach=sharded or None)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    warmup = int(round(cfg.warmup_ratio * total_steps))
    name = "constant_with_warmup" if cfg.scheduler == "constant" else cfg.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)

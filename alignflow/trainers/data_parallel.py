"""The offline trainers' model on data-parallel ranks: FSDP2 shards, each rank's part of a batch, and
the few collectives the loop needs.

Every forward of training and evaluation runs inside :class:`ForwardRoot`'s forward, the root FSDP
unit: FSDP gathers the root's own parameters (embeddings, final norm, head) in its forward hooks and
reduces their gradients after backward, however the trainer's function reaches into the model
(``body(...)`` then ``head(h)`` in chunks, a classifier's own forward, ...). Every rank must run the
same forwards: training takes an equal part of every micro-batch on each rank, and evaluation runs
the whole validation set on every rank (the results are the same on all; rank 0 logs them).

Saving gathers the full weights to rank 0, loads them into a CPU copy of the model that only rank 0
keeps, and writes that with the ordinary save code (Hugging Face folder, reward offset, metadata).
On one rank nothing is sharded and the model saves itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from alignflow.models.loading import transformer_blocks
from alignflow.runtime import distributed
from alignflow.workers.engine import all_finite, shard


class ForwardRoot(nn.Module):
    """``root(fn, *args)`` runs ``fn(model, *args)``: the forward every trainer pass goes through."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(self.model, *args, **kwargs)


def run_forward(model: nn.Module, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(model, ...)``, through the root when ``model`` is a :class:`ForwardRoot`."""
    return model(fn, *args, **kwargs) if isinstance(model, ForwardRoot) else fn(model, *args, **kwargs)


class DataParallelModel:
    """A Hugging Face model trained on every rank of the process group (one rank: no group)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.root = ForwardRoot(model)
        self.sharded = False
        self._copy: nn.Module | None = None  # rank 0's CPU copy to save from, once sharded

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.root(fn, *args, **kwargs)

    def shard(self) -> None:
        """FSDP2 over the transformer blocks and the root when there are several ranks. Call it after
        the weights are final for the start (a restored checkpoint) and before building the optimizer."""
        if distributed.world_size() == 1:
            return
        if distributed.rank() == 0:
            self._copy = copy.deepcopy(self.model).cpu()
        # fp32 shards: the trainers' autocast sets the compute precision, as on one process.
        shard(self.root, transformer_blocks(self.model), "fp32", torch.device("cpu"), offload=False)
        self.sharded = True

    def non_finite(self) -> list[str]:
        """Names of the weights holding a NaN or an infinity in this rank's shards, or
        ``["a shard on another rank"]`` when only another rank's do: every rank gets the same verdict
        (a collective when sharded)."""
        local = [name for name, t in self.model.state_dict().items()
                 if t.is_floating_point() and not torch.isfinite(t.to_local() if hasattr(t, "to_local") else t).all()]
        if self.sharded and not all_finite(self.root, torch.device("cpu")):
            return local or ["a shard on another rank"]
        return local

    def write(self, fn: Callable[[nn.Module], Any]) -> None:
        """``fn(model)`` on rank 0 with the current full weights (gathered when sharded: a collective);
        every rank returns once it is written."""
        if not self.sharded:
            fn(self.model)
            return
        weights = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self._copy is not None:
            self._copy.load_state_dict(weights, strict=False)  # tied weights are gathered once
            fn(self._copy)
        distributed.barrier()


def rank_part(indices: Sequence[int], rank: int | None = None) -> list[int]:
    """This rank's (or ``rank``'s) equal, consecutive part of a global micro-batch (all of it on one rank)."""
    world, rank = distributed.world_size(), distributed.rank() if rank is None else rank
    size = len(indices) // world
    return list(indices[rank * size : (rank + 1) * size])


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (the values themselves on one rank)."""
    if distributed.world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_min(value: int) -> int:
    """The smallest ``value`` of any rank."""
    if distributed.world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())

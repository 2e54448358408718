"""The worker-group interface: how the controller talks to workers, wherever they run.

A *worker* holds one role's model (actor, rollout, reference, critic, reward) and exposes methods
that take a :class:`~alignflow.batch.Batch` and return a ``Batch`` (new per-row tensors) or a dict
of metrics (``update``). Each such method is tagged with a dispatch mode by :func:`dispatch`.

A *worker group* stands for all the processes that play one role. The controller only ever
calls ``group.call("compute_values", batch)`` or, equivalently, the bound form
``group.compute_values(batch)``; it never sees a model, a device or a process. Two groups:

* ``LocalWorkerGroup`` (``workers/local.py``): one worker in this process; ``call`` is a method
  call. Used on one machine (CPU or one GPU) and in the tests.
* A ``RayWorkerGroup`` (not written yet) adds distribution without touching the controller:
  it starts ``world_size`` Ray actors of the same worker class (``ray.remote(cls).remote(**init)``,
  each a data-parallel rank; updating workers join one ``torch.distributed`` process group so
  their ``optimizer.step`` sees all-reduced gradients), and implements ``call`` with the helpers
  below, from the method's dispatch mode:

  - ``"split"``: ``shards = split_batch(batch, world_size)``; ``futures = [w.<method>.remote(s)
    for w, s in zip(workers, shards)]``; ``collect(ray.get(futures))`` concatenates returned
    Batches in rank order (so row order is kept) and averages returned metric dicts.
  - ``"broadcast"``: every rank gets the same arguments (``save_checkpoint``, ``load_checkpoint``);
    rank 0's result is returned.

  Ray object refs could be passed instead of Batches between groups to avoid a round trip through
  the driver; the controller would not change because it only passes what ``call`` returns.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch

from alignflow.batch import Batch
from alignflow.models.saving import save_model

DispatchMode = Literal["split", "broadcast"]
DISPATCH_ATTR = "_alignflow_dispatch"

F = TypeVar("F", bound=Callable[..., Any])


def dispatch(mode: DispatchMode) -> Callable[[F], F]:
    """Tag a worker method with how a multi-process group spreads its arguments (see module doc)."""
    if mode not in ("split", "broadcast"):
        raise ValueError(f"unknown dispatch mode {mode!r}")

    def decorator(method: F) -> F:
        setattr(method, DISPATCH_ATTR, mode)
        return method

    return decorator


def dispatch_mode(worker: object, method: str) -> DispatchMode:
    """The dispatch mode of ``worker.<method>``; an error listing the callable methods otherwise."""
    function = getattr(type(worker), method, None)
    mode = getattr(function, DISPATCH_ATTR, None)
    if mode is None:
        raise AttributeError(
            f"{type(worker).__name__} has no worker method {method!r}; callable: {', '.join(worker_methods(worker))}")
    return mode


def worker_methods(worker: object) -> list[str]:
    """Names of the methods a group may call on ``worker`` (those tagged with :func:`dispatch`)."""
    return sorted(n for n in dir(type(worker)) if getattr(getattr(type(worker), n, None), DISPATCH_ATTR, None))


def split_batch(batch: Batch, world_size: int) -> list[Batch]:
    """``world_size`` consecutive shards (sizes differ by at most one), one per rank."""
    return batch.chunk(world_size)


def collect(results: Sequence[Any]) -> Any:
    """Merge per-rank results: Batches are concatenated in rank order, metric dicts averaged.

    Anything else (``None``, a path) is taken from rank 0.
    """
    first = results[0]
    if isinstance(first, Batch):
        return Batch.concat(list(results))
    if isinstance(first, dict):
        return reduce_metrics(list(results))
    return first


def reduce_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over ranks (NaN propagates, so a NaN on one rank is never hidden)."""
    keys = dict.fromkeys(k for row in rows for k in row)
    out = {}
    for key in keys:
        values = [float(row[key]) for row in rows if key in row]
        out[key] = math.fsum(values) / len(values)
    return out


class WorkerGroup(ABC):
    """All processes of one role. ``group.method(batch)`` is ``group.call("method", batch)``."""

    @property
    @abstractmethod
    def world_size(self) -> int:
        """Number of workers (data-parallel ranks) in the group."""

    @abstractmethod
    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``method`` on the group's workers according to its dispatch mode; merged result."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return partial(self.call, name)


@dataclass(kw_only=True)
class RLWorkers:
    """The groups an RL controller drives; ``critic`` is None for critic-free estimators."""

    actor: WorkerGroup
    rollout: WorkerGroup
    reference: WorkerGroup
    reward: WorkerGroup
    critic: WorkerGroup | None = None


# ----------------------------------------------------------------------------- shared by model workers

# Float dropout rates some attention modules keep as attributes instead of nn.Dropout modules
# (Llama's ``self.attention_dropout = config.attention_dropout``, read on every forward in train mode).
def micro_batch_weights(micro_batches: Sequence[Batch], loss_agg_mode: str) -> list[float]:
    """Each micro-batch's share of its mini-batch, so accumulated gradients equal one big batch's.

    ``token-mean`` losses weigh a micro-batch by its response tokens, the sequence-mean modes by
    its rows (micro 1 x accumulation 8 == micro 8 x accumulation 1).
    """
    if loss_agg_mode == "token-mean":
        counts = [float(m["response_mask"].sum()) for m in micro_batches]
    else:
        counts = [float(len(m)) for m in micro_batches]
    total = sum(counts) or 1.0
    return [c / total for c in counts]


def add_weighted(totals: dict[str, float], metrics: dict[str, Any], weight: float) -> None:
    """``totals[k] += weight * metrics[k]`` (tensors are read with ``float``)."""
    for key, value in metrics.items():
        totals[key] = totals.get(key, 0.0) + weight * float(value)


def save_trainable(model, tokenizer, optimizer, scheduler, model_dir: Path, state_path: Path,
                   metadata: dict[str, Any]) -> None:
    """The model as a Hugging Face folder (LoRA merged, for users) plus what resuming needs.

    ``state_path`` holds the optimizer and schedule and, for LoRA, the trainable tensors themselves
    (the merged folder cannot be split back into base + adapter).
    """
    save_model(model, tokenizer, model_dir, metadata)
    adapter = ({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
               if hasattr(model, "peft_config") else None)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "adapter": adapter},
               state_path)


def load_trainable(model, optimizer, scheduler, model_dir: Path, state_path: Path) -> None:
    """Inverse of :func:`save_trainable`: weights, optimizer and schedule exactly as saved."""
    from safetensors.torch import load_file

    state = torch.load(state_path, map_location="cpu", weights_only=False)
    if state.get("adapter"):
        missing = set(state["adapter"]) - {n for n, _ in model.named_parameters()}
        if missing:
            raise ValueError(f"{state_path}: adapter tensors {sorted(missing)[:5]} are not in the model")
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, tensor in state["adapter"].items():
                params[name].copy_(tensor)
    else:
        weights: dict[str, torch.Tensor] = {}
        for shard in sorted(Path(model_dir).glob("*.safetensors")):
            weights.update(load_file(shard))
        missing, unexpected = model.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
        if missing or unexpected:
            raise ValueError(f"{model_dir} does not match the model: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])


def step_optimizer(model, optimizer, scheduler, max_grad_norm: float) -> dict[str, float]:
    """Clip, step, advance the schedule, clear gradients. A non-finite gradient skips the update
    (the weights stay finite; ``grad_norm`` reports it and the alerts fire); the schedule still
    advances so that it stays aligned with the planned number of updates."""
    params = [p for p in model.parameters() if p.requires_grad]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    finite = bool(torch.isfinite(grad_norm))
    lr = scheduler.get_last_lr()[0]  # the rate this update uses
    if finite:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"grad_norm": float(grad_norm), "lr": lr, "skipped_update_frac": float(not finite)}

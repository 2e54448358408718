"""The worker-group interface: how the controller talks to workers, wherever they run.

A *worker* holds one role's models on one rank: ``policy`` (actor, rollout engine and reference),
``critic`` or ``reward``. It is built on its own side from ``(config, role)`` and loads its models
in ``init_model()``, so no live module ever crosses a process boundary. Its methods take and
return :class:`~alignflow.batch.Batch` es and plain metric dicts, or a ``(Batch, metrics)`` pair;
each is tagged with a dispatch mode by :func:`dispatch`:

* ``"split"``: the batch (first argument) is cut into ``world_size`` consecutive shards, one per
  rank; returned Batches are concatenated in rank order (so row order is kept).
* ``"broadcast"``: every rank gets the same arguments (an update over the whole batch, of which
  each rank trains its part of every mini-batch; checkpoints; weight sync). Returned Batches are
  concatenated in rank order too (each rank returns the rows it owns), anything else is rank 0's.

Metric dicts are reduced across ranks (:func:`reduce_metrics`): means, except counts (keys ending
in ``_tokens``), which are summed. The controller only ever calls ``group.method(...)`` (the same
as ``group.call("method", ...)``); it never sees a model, a device or a process. Two groups:
``LocalWorkerGroup`` (``workers/local.py``, this process) and ``RayWorkerGroup``
(``workers/ray_group.py``, one Ray actor per rank in a torch.distributed group).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeVar

from alignflow.batch import Batch
from alignflow.rollout.base import align_widths

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
    """The dispatch mode of ``<worker>.<method>`` (a worker or its class); an error listing the
    callable methods otherwise."""
    cls = worker if isinstance(worker, type) else type(worker)
    mode = getattr(getattr(cls, method, None), DISPATCH_ATTR, None)
    if mode is None:
        callable_methods = ", ".join(worker_methods(cls))
        raise AttributeError(f"{cls.__name__} has no worker method {method!r}; callable: {callable_methods}")
    return mode


def worker_methods(worker: object) -> list[str]:
    """Names of the methods a group may call on ``worker`` (those tagged with :func:`dispatch`)."""
    cls = worker if isinstance(worker, type) else type(worker)
    return sorted(n for n in dir(cls) if getattr(getattr(cls, n, None), DISPATCH_ATTR, None))


def split_batch(batch: Batch, world_size: int) -> list[Batch]:
    """``world_size`` consecutive shards (sizes differ by at most one), one per rank."""
    return batch.chunk(world_size)


def collect(results: Sequence[Any]) -> Any:
    """Merge per-rank results: Batches are concatenated in rank order, metric dicts reduced
    (:func:`reduce_metrics`), ``(Batch, metrics)`` pairs element by element. Anything else
    (``None``, a path) is taken from rank 0.
    """
    first = results[0]
    if isinstance(first, Batch):
        return Batch.concat(align_widths(list(results)))
    if isinstance(first, dict):
        return reduce_metrics(list(results))
    if isinstance(first, tuple):
        return tuple(collect(list(parts)) for parts in zip(*results))
    return first


def is_count(key: str) -> bool:
    """Metrics that count things (generated tokens) add up across ranks; the others are means."""
    return key.endswith("_tokens")


def reduce_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each metric over ranks: summed for counts, else the mean (NaN propagates, so a NaN on one
    rank is never hidden)."""
    keys = dict.fromkeys(k for row in rows for k in row)
    out = {}
    for key in keys:
        values = [float(row[key]) for row in rows if key in row]
        out[key] = math.fsum(values) if is_count(key) else math.fsum(values) / len(values)
    return out


class NonFiniteWeightsError(ValueError):
    """A worker refused to save weights that are not finite (a diverged run)."""


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
    """The groups an RL controller drives; ``critic`` is None for critic-free estimators.
    ``shutdown`` releases them (Ray actors; nothing for local ones)."""

    policy: WorkerGroup
    reward: WorkerGroup
    critic: WorkerGroup | None = None
    shutdown: Callable[[], None] = lambda: None


# ----------------------------------------------------------------------------- shared by model workers


def micro_batch_weights(micro_batches: Sequence[Batch], loss_agg_mode: str) -> list[float]:
    """Each micro-batch's share of the rows they make up together, so accumulated gradients equal
    one big batch's.

    ``token-mean`` losses weigh a micro-batch by its response tokens, the sequence-mean modes by
    its rows (micro 1 x accumulation 8 == micro 8 x accumulation 1).
    """
    counts = [loss_weight(m, loss_agg_mode) for m in micro_batches]
    total = sum(counts) or 1.0
    return [c / total for c in counts]


def loss_weight(batch: Batch, loss_agg_mode: str) -> float:
    """How much ``batch`` counts in a loss averaged over ``loss_agg_mode``'s units (tokens or rows)."""
    return float(batch["response_mask"].sum()) if loss_agg_mode == "token-mean" else float(len(batch))


def add_weighted(totals: dict[str, float], metrics: dict[str, Any], weight: float) -> None:
    """``totals[k] += weight * metrics[k]`` (tensors are read with ``float``)."""
    for key, value in metrics.items():
        totals[key] = totals.get(key, 0.0) + weight * float(value)

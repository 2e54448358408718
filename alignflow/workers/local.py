"""Workers in this process: `LocalWorkerGroup` and the builder of a local RL worker set.

``build_local_workers`` is the only place that knows the workers are local; the Ray builder
(``workers/ray_group.py``) builds the same roles as ``RayWorkerGroup`` s and hands the controller
the same :class:`~alignflow.workers.base.RLWorkers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignflow.config.rl import RLConfig
from alignflow.rewards import RewardFunction
from alignflow.workers.base import RLWorkers, WorkerGroup, collect, dispatch_mode, split_batch
from alignflow.workers.critic import CriticWorker
from alignflow.workers.policy import PolicyWorker
from alignflow.workers.reward import RewardWorker


class LocalWorkerGroup(WorkerGroup):
    """Workers held in this process; ``call`` dispatches like a distributed group would.

    With one worker (the usual case) a call is a plain method call. Several workers are allowed
    for roles without training state (reward), where splitting a batch across them and
    concatenating the results must equal one worker's answer; it exercises the same split/collect
    path a Ray group uses.
    """

    def __init__(self, workers: object | Sequence[object]) -> None:
        self.workers = list(workers) if isinstance(workers, (list, tuple)) else [workers]
        if not self.workers:
            raise ValueError("a worker group needs at least one worker")

    @property
    def world_size(self) -> int:
        return len(self.workers)

    @property
    def worker(self) -> object:
        """Rank 0's worker (tests and local tooling may inspect it; the controller never does)."""
        return self.workers[0]

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        mode = dispatch_mode(self.workers[0], method)
        if self.world_size == 1:
            return getattr(self.workers[0], method)(*args, **kwargs)
        if mode == "split":
            batch, *rest = args
            shards = split_batch(batch, self.world_size)
            return collect([getattr(w, method)(s, *rest, **kwargs) for w, s in zip(self.workers, shards)])
        return collect([getattr(w, method)(*args, **kwargs) for w in self.workers])


def build_local_workers(cfg: RLConfig, *, reward_fn: RewardFunction | None = None) -> RLWorkers:
    """Every role of ``cfg`` in this process, each built from the config and loading its own models.
    ``reward_fn`` overrides the config's reward (tests, notebooks)."""
    workers = {"policy": PolicyWorker(cfg), "reward": RewardWorker(cfg, reward_fn=reward_fn)}
    if cfg.needs_critic:
        workers["critic"] = CriticWorker(cfg)
    for worker in workers.values():
        worker.init_model()
    return RLWorkers(**{role: LocalWorkerGroup(worker) for role, worker in workers.items()})

"""Worker groups on Ray: one actor per data-parallel rank, joined in a torch.distributed group.

Placement (``distributed.placement``)::

    colocated   one pool of world_size bundles; the actor on bundle r is rank r of every role
                   bundle 0: [policy 0 | critic 0 | reward 0]   bundle 1: [policy 1 | critic 1 | reward 1]
                (one process per rank holds all its roles, as verl's hybrid engine)
    split       one pool per role, each with world_size bundles and actors of its own

A pool is a placement group with one bundle per rank (``{"CPU": c, "GPU": g}``, ``STRICT_PACK``: one
node). Every actor builds its workers from ``(config, role)`` on its own side and loads their models
in ``init_model``; the actors of a pool join one process group (gloo on CPU, nccl on GPU) from an
address rank 0 offers. Every call waits with a timeout, and a dead actor is reported with its role
and rank (:class:`WorkerFailure`) as soon as Ray notices, not when the other ranks time out.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from alignflow.batch import Batch
from alignflow.config.loader import ConfigError
from alignflow.config.rl import RLConfig
from alignflow.rewards import RewardFunction
from alignflow.workers.base import RLWorkers, WorkerGroup, collect, dispatch_mode, split_batch


class WorkerFailure(RuntimeError):
    """A worker process died or stopped answering; names its role and rank."""

    def __init__(self, message: str, role: str, rank: int) -> None:
        super().__init__(message)
        self.role, self.rank = role, rank


class RankHost:
    """One rank's process: the workers of its roles, built from ``(config, role)`` on this side."""

    def __init__(self, config: RLConfig, roles: Sequence[str], rank: int, world_size: int,
                 reward_fn: RewardFunction | None = None) -> None:
        import torch

        from alignflow.workers import WORKER_CLASSES

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        self.rank, self.world_size = rank, world_size
        self.workers = {role: WORKER_CLASSES[role](config, role) for role in roles if role != "reward"}
        if "reward" in roles:
            self.workers["reward"] = WORKER_CLASSES["reward"](config, "reward", reward_fn=reward_fn)

    def address(self) -> tuple[str, int]:
        from alignflow.runtime.distributed import free_address

        return free_address()

    def join(self, master_addr: str, master_port: int, timeout_s: float) -> None:
        from alignflow.runtime.distributed import init_distributed

        init_distributed(self.rank, self.world_size, master_addr, master_port, timeout_s)

    def init_models(self) -> None:
        for worker in self.workers.values():
            worker.init_model()

    def execute(self, role: str, method: str, *args: Any, **kwargs: Any) -> tuple[Any, float]:
        """The method's result and the seconds it ran here (the group charges the rest of a call's
        time to dispatch, serialisation and waiting)."""
        started = time.perf_counter()
        return getattr(self.workers[role], method)(*args, **kwargs), time.perf_counter() - started

    def pid(self) -> int:
        return os.getpid()


def wait_all(refs: list, role: str, timeout_s: float) -> list[Any]:
    """Every rank's result in rank order. A dead actor raises :class:`WorkerFailure` at once (the
    other ranks may be blocked in a collective with it); an exception inside a worker is re-raised
    as itself; ranks silent for ``timeout_s`` are reported as hung."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    rank_of = {ref: rank for rank, ref in enumerate(refs)}
    results: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(deadline - time.monotonic(), 0))
        if not ready:
            ranks = sorted(rank_of[ref] for ref in pending)
            raise WorkerFailure(f"{role} worker rank(s) {ranks} did not answer within {timeout_s:.0f} s "
                                "(distributed.timeout_s)", role, ranks[0])
        for ref in ready:
            try:
                results[rank_of[ref]] = ray.get(ref)
            except RayActorError as err:
                rank = rank_of[ref]
                message = f"the {role} worker of rank {rank} died ({type(err).__name__})"
                raise WorkerFailure(message, role, rank) from None
            except RayTaskError as err:
                raise err.as_instanceof_cause() from None
    return [results[rank] for rank in range(len(refs))]


class RayWorkerGroup(WorkerGroup):
    """The ``role`` workers on ``actors`` (rank order); ``call`` dispatches by the method's mode.

    A split batch whose rows do not divide evenly is padded with copies of its last row, so every
    rank runs the same passes (sharded forwards are collectives), and the copies are dropped from
    the result."""

    def __init__(self, actors: list, role: str, worker_class: type, timeout_s: float) -> None:
        self.actors, self.role, self.worker_class, self.timeout_s = actors, role, worker_class, timeout_s
        # method -> [(seconds the call took here, seconds the slowest rank ran it)], for the bench
        self.timings: dict[str, list[tuple[float, float]]] = {}

    @property
    def world_size(self) -> int:
        return len(self.actors)

    def _run(self, method: str, per_rank_args: list[tuple[tuple, dict]]) -> list[Any]:
        """``method`` on every rank with its own arguments; results in rank order, timed."""
        started = time.perf_counter()
        refs = [actor.execute.remote(self.role, method, *args, **kwargs)
                for actor, (args, kwargs) in zip(self.actors, per_rank_args)]
        results, seconds = zip(*wait_all(refs, self.role, self.timeout_s))
        self.timings.setdefault(method, []).append((time.perf_counter() - started, max(seconds)))
        return list(results)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        mode = dispatch_mode(self.worker_class, method)
        if mode != "split":
            return collect(self._run(method, [(args, kwargs)] * self.world_size))
        batch, *rest = args
        rows = len(batch)
        shards = split_batch(batch.index(list(range(rows)) + [rows - 1] * (-rows % self.world_size)), self.world_size)
        real = [len(s) for s in split_batch(batch, self.world_size)] if rows % self.world_size else None
        results = self._run(method, [((shard, *rest), kwargs) for shard in shards])
        if real is not None:  # drop the padding rows (a method may return several rows per input row)
            results = [_first_rows(result, keep, len(shard)) for result, keep, shard in zip(results, real, shards)]
        return collect(results)


def _first_rows(result: Any, keep: int, given: int) -> Any:
    """The rows of ``result`` that answer the first ``keep`` of the ``given`` input rows."""
    if isinstance(result, Batch):
        return result.index(list(range(keep * len(result) // given)))
    if isinstance(result, tuple):
        return tuple(_first_rows(part, keep, given) for part in result)
    return result


# ----------------------------------------------------------------------------- building the groups


def start_ray(address: str | None) -> None:
    """Connect to ``address`` (an existing cluster), or start a local Ray instance on this node."""
    import ray

    if ray.is_initialized():
        return
    ray.init(address=address, include_dashboard=False, ignore_reinit_error=True, logging_level="WARNING",
             log_to_driver=True)


def check_resources(cfg: RLConfig, pools: int) -> None:
    """World size x bundle x pools must fit what Ray reports, else a ConfigError naming both."""
    import ray

    dist = cfg.distributed
    available = ray.cluster_resources()
    for kind, per_worker in (("CPU", dist.num_cpus_per_worker), ("GPU", dist.num_gpus_per_worker)):
        needed = per_worker * dist.world_size * pools
        if needed > available.get(kind, 0.0) + 1e-9:
            raise ConfigError(f"distributed.world_size={dist.world_size} x num_{kind.lower()}s_per_worker="
                              f"{per_worker} x {pools} pool(s) needs {needed:g} {kind}, but Ray reports "
                              f"{available.get(kind, 0.0):g}; lower the world size or the per-worker share")


def worker_env(cfg: RLConfig) -> dict[str, str]:
    """What a rank's process inherits: one thread per whole CPU it holds, and the driver's import
    path (so rewards defined in the caller's modules load on the workers too)."""
    threads = max(1, int(cfg.distributed.num_cpus_per_worker))
    path = [p for p in sys.path if p and os.path.isdir(p)]
    return {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(path),
            "TOKENIZERS_PARALLELISM": "false"}


def build_ray_workers(cfg: RLConfig, *, reward_fn: RewardFunction | None = None) -> RLWorkers:
    """The RL roles as Ray worker groups of ``distributed.world_size`` ranks each (module doc)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from alignflow.workers import WORKER_CLASSES

    dist = cfg.distributed
    start_ray(dist.ray_address)
    roles = ["policy", "reward"] + (["critic"] if cfg.needs_critic else [])
    pools = {"colocated": roles} if dist.placement == "colocated" else {role: [role] for role in roles}
    check_resources(cfg, len(pools))
    bundle = {"CPU": dist.num_cpus_per_worker}
    if dist.num_gpus_per_worker:
        bundle["GPU"] = dist.num_gpus_per_worker
    remote_host = ray.remote(RankHost)
    groups, placement_groups, all_actors = {}, [], []

    def shutdown() -> None:
        for actor in all_actors:
            ray.kill(actor)
        for group in placement_groups:
            remove_placement_group(group)

    try:
        for pool_roles in pools.values():
            group = placement_group([bundle] * dist.world_size, strategy="STRICT_PACK")
            placement_groups.append(group)
            ray.get(group.ready(), timeout=dist.timeout_s)
            actors = [remote_host.options(
                num_cpus=dist.num_cpus_per_worker, num_gpus=dist.num_gpus_per_worker, max_restarts=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank),
                runtime_env={"env_vars": worker_env(cfg)},
            ).remote(cfg, pool_roles, rank, dist.world_size, reward_fn) for rank in range(dist.world_size)]
            all_actors.extend(actors)
            master_addr, master_port = ray.get(actors[0].address.remote(), timeout=dist.timeout_s)
            wait_all([a.join.remote(master_addr, master_port, dist.timeout_s) for a in actors], "+".join(pool_roles),
                     dist.timeout_s)
            wait_all([a.init_models.remote() for a in actors], "+".join(pool_roles), dist.timeout_s)
            for role in pool_roles:
                groups[role] = RayWorkerGroup(actors, role, WORKER_CLASSES[role], dist.timeout_s)
    except BaseException:
        shutdown()
        raise
    return RLWorkers(**groups, shutdown=shutdown)

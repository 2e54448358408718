"""Run an offline job (sft, rm train, dpo) on its data-parallel ranks.

* ``distributed.world_size: 1``: the job runs in this process.
* ``distributed.world_size: N``: this process starts N ranks on this node (``spawn``: fresh
  interpreters, so nothing of this process's threads or state leaks into them), waits for them and
  returns rank 0's result. The first rank that fails stops the others, and its error is raised here
  as it was raised there (a config error stays one line).
* Under ``torchrun``: every process torchrun started is a rank (``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR``, ``MASTER_PORT`` in the environment); the config's ``world_size`` follows it.

Processes rather than Ray actors: an offline job has one role and lives for one call, so the
torchrun protocol is all it needs, with no Ray dependency and no cluster start-up; the same code
path serves a job alignflow starts and one torchrun starts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console
from torch.multiprocessing.spawn import ProcessException

from alignflow.config.loader import ConfigError
from alignflow.runtime.distributed import init_distributed

R = TypeVar("R")
Job = Callable[[Any, Console], R]
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def run_on_ranks(job: Job, cfg: Any, console: Console) -> R:
    """``job(cfg, console)`` on every rank of ``cfg.distributed``; rank 0's result (see module doc)."""
    if all(key in os.environ for key in TORCHRUN_ENV):
        cfg = with_world_size(cfg, int(os.environ["WORLD_SIZE"]))
        return _as_rank(job, cfg, console, int(os.environ["RANK"]), os.environ["MASTER_ADDR"],
                        int(os.environ["MASTER_PORT"]))
    if cfg.distributed.world_size == 1:
        return job(cfg, console)
    return _spawn(job, cfg, console)


def with_world_size(cfg: Any, started: int) -> Any:
    """``cfg`` on the ``started`` ranks torchrun started (validated again: the world must divide the
    batches); a config that asks for another number is an error."""
    asked = cfg.distributed.world_size
    if asked not in (1, started):
        raise ConfigError(f"distributed.world_size={asked}, but torchrun started {started} ranks (WORLD_SIZE); "
                          "leave distributed.world_size at 1 under torchrun or set it to the same number")
    cfg = dataclasses.replace(cfg, distributed=dataclasses.replace(cfg.distributed, world_size=started))
    cfg.validate()
    return cfg


def _as_rank(job: Job, cfg: Any, console: Console, rank: int, address: str, port: int) -> R:
    """Join the group as ``rank`` and run the job; only rank 0 prints."""
    init_distributed(rank, cfg.distributed.world_size, address, port, timeout_s=cfg.distributed.timeout_s)
    try:
        return job(cfg, console if rank == 0 else Console(quiet=True))
    finally:
        dist.destroy_process_group()


def _spawn(job: Job, cfg: Any, console: Console) -> R:
    world = cfg.distributed.world_size
    address, port = "127.0.0.1", _free_port()
    context = mp.get_context("spawn")
    outcomes = context.SimpleQueue()  # (rank, "result" | "error", value)
    ranks = mp.start_processes(_rank_main, args=(job, cfg, console.quiet, address, port, outcomes), nprocs=world,
                               join=False, start_method="spawn")
    received: list[tuple[int, str, Any]] = []
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)  # stopping the others is the plan
    try:
        while not ranks.join(timeout=0.5):  # join stops the other ranks when one fails
            received += _drain(outcomes)
    except ProcessException as err:
        received += _drain(outcomes)
        errors = [value for _, kind, value in received if kind == "error"]
        if errors:
            raise errors[0] from None
        raise RuntimeError(f"rank {err.error_index} of {world} died ({err}); the others were stopped") from None
    received += _drain(outcomes)
    results = [value for rank, kind, value in received if rank == 0 and kind == "result"]
    if not results:  # rank 0 was interrupted (Ctrl-C) and ended quietly
        raise KeyboardInterrupt
    return results[0]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _drain(queue) -> list[tuple[int, str, Any]]:
    items = []
    while not queue.empty():
        items.append(queue.get())
    return items


def _rank_main(rank: int, job: Job, cfg: Any, quiet: bool, address: str, port: int, outcomes) -> None:
    """A spawned rank: its share of the CPU's threads (unless set), the job, and its outcome reported."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.distributed.world_size))
    try:
        result = _as_rank(job, cfg, Console(quiet=quiet), rank, address, port)
    except Exception as err:  # noqa: BLE001 - every failure is reported to the launcher, then this rank exits
        outcomes.put((rank, "error", _picklable(err)))
        raise SystemExit(2) from None
    outcomes.put((rank, "result", result if rank == 0 else None))


def _picklable(err: Exception) -> Exception:
    """``err`` itself when it crosses a process boundary intact, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(err).__name__}: {err}")

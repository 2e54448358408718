"""An optimizer's state as ``torch.distributed.checkpoint`` shards: written by every rank, read back at
any world size, tensors only (nothing is unpickled on resume).

Shared by the RL training engine and the offline trainers' loop, so that both read each other's
layout and refuse the same things.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict


class TensorsOnlyLoadPlanner(DefaultLoadPlanner):
    """A checkpoint reader that refuses pickled objects: an optimizer state is tensors only."""

    def load_bytes(self, read_item, value) -> None:
        raise ValueError(f"checkpoint entry {read_item.dest_index.fqn!r} is a pickled object, not a tensor; "
                         "refusing to unpickle it (was the checkpoint written by alignflow?)")


@contextmanager
def _one_process_is_fine() -> Iterator[None]:
    """Without a process group DCP warns that it assumes one process: that is the intended case."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def save_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """This rank's shards of the optimizer's tensors under ``directory`` (a collective when sharded)."""
    state = get_optimizer_state_dict(module, optimizer)
    with _one_process_is_fine():
        dcp.save({"state": state["state"]}, checkpoint_id=directory)


def load_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, directory: Path, *,
                         advice: str) -> None:
    """Fill ``optimizer`` (its param groups stay as built) from the shards :func:`save_optimizer_state`
    wrote at any world size. Unreadable shards are one ``ValueError`` line: the folder, the first
    rank's reason and ``advice`` (what the user can do)."""
    state = get_optimizer_state_dict(module, optimizer)  # initialises the tensors to fill
    target = {"state": state["state"]}
    try:
        with _one_process_is_fine():
            dcp.load(target, checkpoint_id=directory, planner=TensorsOnlyLoadPlanner())
    except CheckpointException as err:
        reason = str(err).strip().splitlines()[-1]
        raise ValueError(f"{directory}: {reason}; {advice}") from None
    set_optimizer_state_dict(module, optimizer, {"state": target["state"], "param_groups": state["param_groups"]})

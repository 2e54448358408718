"""torch.distributed for data-parallel ranks: joining the group, and who this process is in it.

Ranks join from the address and port that rank 0 offers (``free_address``); on CPUs they talk over
gloo, on GPUs over nccl (``cpu:gloo,cuda:nccl`` serves both in one group). Without a group every
helper answers for one process: rank 0 of 1.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist


def free_address() -> tuple[str, int]:
    """This node's IP address and a free TCP port, for rank 0 to host the rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    try:
        import ray

        host = ray.util.get_node_ip_address()
    except (ImportError, RuntimeError):
        host = "127.0.0.1"
    return host, port


def init_distributed(rank: int, world_size: int, master_addr: str, master_port: int,
                     timeout_s: float = 600.0) -> None:
    """Join the default process group as ``rank`` of ``world_size`` (the env variables are set too,
    for libraries that read them)."""
    os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=os.environ.get("LOCAL_RANK", "0"))
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()

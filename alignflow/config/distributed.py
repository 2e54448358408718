"""Where a job's ranks run. RL: its workers in this process, or Ray actors joined in a
torch.distributed group. Offline jobs (sft, rm train, dpo): ``world_size`` processes on this node
that alignflow starts, or the ranks torchrun started."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alignflow.config.loader import ConfigError


@dataclass
class DistributedConfig:
    # local: RL runs every worker in this process (one rank); an offline job (sft, rm train, dpo) runs
    # `world_size` processes on this node. ray (RL only): `world_size` Ray actors per worker group.
    # Either way each rank trains data-parallel with FSDP2 (gloo on CPU, nccl on GPU).
    backend: Literal["local", "ray"] = "local"
    world_size: int = 1  # data-parallel ranks; global batch sizes are split across them
    # colocated: policy, critic and reward workers share one placement group (bundle i holds rank i
    # of every role, as verl's hybrid engine); split: each role gets bundles of its own.
    placement: Literal["colocated", "split"] = "colocated"
    ray_address: str | None = None  # an existing cluster ("auto", "ray://host:10001"); null = start one here
    num_cpus_per_worker: float = 1.0  # CPUs a rank's bundle reserves (fractions allowed)
    num_gpus_per_worker: float = 0.0  # GPUs a rank's bundle reserves (1 per rank on a GPU node)
    offload: bool = False  # FSDP2 CPU offload of sharded parameters and optimizer state (GPU memory)
    # A dead worker stops the run naming its role, rank and the last good checkpoint. With N > 0 the
    # worker groups are rebuilt and resume from that checkpoint, at most N times.
    max_restarts: int = 0
    timeout_s: float = 600.0  # a worker call that takes longer than this is reported as hung

    def validate(self) -> None:
        """The RL job's settings."""
        self._validate_common()
        if self.backend == "local" and self.world_size != 1:
            raise ConfigError(f"distributed.world_size={self.world_size} needs distributed.backend=ray "
                              "(the local backend runs one rank in this process)")

    def validate_offline(self) -> None:
        """An offline job's settings: its ranks are processes on this node (or torchrun's)."""
        self._validate_common()
        if self.backend != "local":
            raise ConfigError(f"distributed.backend={self.backend} is for alignflow rl; sft, rm train and dpo "
                              "start distributed.world_size processes on this node (backend: local) or run "
                              "under torchrun")

    def _validate_common(self) -> None:
        if self.world_size < 1:
            raise ConfigError(f"distributed.world_size must be >= 1, got {self.world_size}")
        if self.num_cpus_per_worker <= 0 and self.num_gpus_per_worker <= 0:
            raise ConfigError("distributed.num_cpus_per_worker or distributed.num_gpus_per_worker must be > 0")
        if self.num_cpus_per_worker < 0 or self.num_gpus_per_worker < 0:
            raise ConfigError("distributed.num_cpus_per_worker and num_gpus_per_worker must be >= 0")
        if self.max_restarts < 0:
            raise ConfigError(f"distributed.max_restarts must be >= 0, got {self.max_restarts}")
        if not self.timeout_s > 0:
            raise ConfigError(f"distributed.timeout_s must be > 0, got {self.timeout_s}")

"""Workers by role (policy = actor + rollout + reference, critic, reward) behind one worker-group
interface, in this process (`LocalWorkerGroup`) or on Ray actors (`RayWorkerGroup`).

Each worker method takes a `Batch` and returns a `Batch`, metrics, or both; the controller calls
them through a `WorkerGroup`, so where the workers run is not its concern.
"""

from alignflow.workers.base import RLWorkers, WorkerGroup, collect, dispatch, reduce_metrics, split_batch
from alignflow.workers.critic import CriticWorker
from alignflow.workers.local import LocalWorkerGroup, build_local_workers
from alignflow.workers.policy import PolicyWorker
from alignflow.workers.reward import RewardWorker

# Role name -> the worker class a rank builds from (config, role).
WORKER_CLASSES = {"policy": PolicyWorker, "critic": CriticWorker, "reward": RewardWorker}

__all__ = [
    "WORKER_CLASSES", "CriticWorker", "LocalWorkerGroup", "PolicyWorker", "RLWorkers", "RewardWorker", "WorkerGroup",
    "build_local_workers", "collect", "dispatch", "reduce_metrics", "split_batch",
]

"""Workers by role (actor, rollout, reference, critic, reward) behind one worker-group interface.

Each worker method takes a `Batch` and returns a `Batch` (or metrics); the controller calls them
through a `WorkerGroup`, so where the workers run (this process, Ray actors) is not its concern.
"""

from alignflow.workers.actor import ActorWorker, RolloutWorker, response_logprobs
from alignflow.workers.base import RLWorkers, WorkerGroup, collect, dispatch, reduce_metrics, split_batch
from alignflow.workers.critic import CriticWorker, token_values
from alignflow.workers.local import LocalWorkerGroup, build_local_workers
from alignflow.workers.reference import ReferenceWorker
from alignflow.workers.reward import RewardWorker

__all__ = [
    "ActorWorker", "CriticWorker", "LocalWorkerGroup", "RLWorkers", "ReferenceWorker", "RewardWorker",
    "RolloutWorker", "WorkerGroup", "build_local_workers", "collect", "dispatch", "reduce_metrics",
    "response_logprobs", "split_batch", "token_values",
]

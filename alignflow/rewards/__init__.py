"""Rewards for RL: the `RewardFunction` interface, reward-model and Python rewards, and their sums."""

from alignflow.rewards.base import RewardFunction, RewardModelReward, import_reward_function
from alignflow.rewards.build import build_reward_function, build_reward_term
from alignflow.rewards.composite import Ensemble, LengthPenalty, WeightedSum
from alignflow.rewards.guard import GuardedReward, RewardError

__all__ = ["Ensemble", "GuardedReward", "LengthPenalty", "RewardError", "RewardFunction", "RewardModelReward",
           "WeightedSum", "build_reward_function", "build_reward_term", "import_reward_function"]

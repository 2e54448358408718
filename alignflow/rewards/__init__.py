"""Rewards for RL: the `RewardFunction` interface, the reward-model adapter and Python rewards."""

from alignflow.rewards.base import RewardFunction, RewardModelReward, build_reward_function, import_reward_function

__all__ = ["RewardFunction", "RewardModelReward", "build_reward_function", "import_reward_function"]

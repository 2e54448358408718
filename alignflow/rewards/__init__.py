"""Rewards for RL: the `RewardFunction` interface, reward-model, classifier and Python rewards, and their sums."""

from alignflow.rewards.base import RewardFunction, RewardModelReward, import_reward_function
from alignflow.rewards.build import build_reward_function, build_reward_term
from alignflow.rewards.classifier import ClassifierReward
from alignflow.rewards.composite import Ensemble, LengthPenalty, WeightedSum
from alignflow.rewards.guard import GuardedReward, RewardError
from alignflow.rewards.text_classifier import TextClassifier, TextClassifierReward

__all__ = ["ClassifierReward", "Ensemble", "GuardedReward", "LengthPenalty", "RewardError", "RewardFunction",
           "RewardModelReward", "TextClassifier", "TextClassifierReward", "WeightedSum", "build_reward_function",
           "build_reward_term", "import_reward_function"]

"""The job's reward from its config: reward models, classifiers and Python functions, weighted and summed."""

from __future__ import annotations

from collections.abc import Sequence

from alignflow.config.rewards import RewardSpec, legacy_reward_specs
from alignflow.data.types import Message
from alignflow.rewards.base import RewardFunction, RewardModelReward, import_reward_function
from alignflow.rewards.classifier import ClassifierReward
from alignflow.rewards.composite import Ensemble, LengthPenalty, WeightedSum
from alignflow.rewards.guard import GuardedReward, check_scores
from alignflow.rewards.text_classifier import TextClassifierReward


def build_reward_term(spec: RewardSpec, *, dtype: str = "bf16", key: str = "rewards[0]") -> RewardFunction:
    """One ``rewards:`` entry as a reward function (its weight is applied by the sum); ``key`` names
    the entry in config errors (an unknown ``class_label``)."""
    if spec.kind == "classifier":
        return ClassifierReward(spec.path, class_label=spec.class_label, output=spec.output,
                                with_prompt=spec.with_prompt, max_length=spec.max_length, dtype=dtype,
                                key=f"{key}.class_label")
    if spec.kind == "text_classifier":
        return TextClassifierReward(spec.path, class_label=spec.class_label, output=spec.output,
                                    with_prompt=spec.with_prompt, key=f"{key}.class_label")
    if spec.kind == "reward_model":
        return RewardModelReward(spec.path, dtype=dtype)
    if spec.kind == "ensemble":
        return Ensemble([(path, RewardModelReward(path, dtype=dtype)) for path in spec.paths], spec.reduce)
    if spec.kind == "length_penalty":
        return LengthPenalty(spec.coef, spec.target, spec.unit)
    if spec.kind == "function":
        return GuardedReward(import_reward_function(spec.spec), spec.label, timeout=spec.timeout,
                             on_error=spec.on_error, fallback=spec.fallback, isolation=spec.isolation)
    raise ValueError(f"unknown reward kind {spec.kind!r}")


def build_reward_function(reward_model: str = "", reward_function: str = "", *, rewards: Sequence[RewardSpec] = (),
                          dtype: str = "bf16") -> RewardFunction:
    """The job's reward: ``rewards`` (a weighted sum of terms), or the single ``reward_model`` folder
    or ``reward_function`` spec those keys stand for (exactly one of the three)."""
    if sum(map(bool, (reward_model, reward_function, rewards))) != 1:
        raise ValueError("give exactly one of reward_model, reward_function and rewards")
    specs = list(rewards) or legacy_reward_specs(reward_model, reward_function)
    terms = [(spec.label, spec.weight, build_reward_term(spec, dtype=dtype, key=f"rewards[{i}]"))
             for i, spec in enumerate(specs)]
    if len(terms) == 1 and terms[0][1] == 1.0:
        return terms[0][2]  # nothing to sum
    return WeightedSum(terms)


class RewardScorer:
    """A reward function as an evaluation scorer: ``score(prompts, responses)``, called without metadata."""

    def __init__(self, reward: RewardFunction, name: str) -> None:
        self.reward, self.name = reward, name

    def score(self, prompts: list[list[Message]], responses: list[str]) -> list[float]:
        return check_scores(self.name, self.reward(prompts, list(responses), {}), responses, {})


def build_reward_scorer(spec: RewardSpec, key: str, *, dtype: str = "bf16") -> RewardScorer:
    """One ``rewards:`` entry (``proxy_reward:`` / ``judge_reward:`` of an eval config) as a scorer."""
    return RewardScorer(build_reward_term(spec, dtype=dtype, key=key), spec.label)

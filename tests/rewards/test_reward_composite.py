"""Weighted sums, ensembles and length penalties, and the builder that reads `rewards:` specs."""

import pytest

from alignflow.config.rewards import RewardSpec
from alignflow.rewards import (
    Ensemble,
    GuardedReward,
    LengthPenalty,
    RewardError,
    WeightedSum,
    build_reward_function,
)

PROMPTS = [[{"role": "user", "content": "What is 2 + 3?"}]] * 3
RESPONSES = ["5", "The answer is 6.", "2 + 3 = 5, so five"]
METADATA = {"reference": ["5", "5", "5"], "source": ["a:1", "a:2", "a:3"], "response_length": [1, 5, 9]}


def constant(value):
    return lambda prompts, responses, metadata: [value] * len(responses)


def by_index(*values):
    return lambda prompts, responses, metadata: list(values)


def test_weighted_sum_adds_weighted_terms():
    total = WeightedSum([("a", 2.0, by_index(1.0, 0.0, 0.5)), ("b", -0.5, by_index(4.0, 2.0, 0.0))])
    assert total(PROMPTS, RESPONSES, METADATA) == [0.0, -1.0, 1.0]


def test_weighted_sum_names_the_term_that_returns_nan():
    total = WeightedSum([("fine", 1.0, constant(1.0)), ("broken", 1.0, by_index(0.0, float("nan"), 0.0))])
    with pytest.raises(RewardError, match=r"reward 'broken' returned nan for sample 1 \(source a:2"):
        total(PROMPTS, RESPONSES, METADATA)


def test_ensemble_mean_and_min():
    members = [("rm1", by_index(1.0, -2.0, 0.5)), ("rm2", by_index(3.0, 0.0, 0.5))]
    assert Ensemble(members, "mean")(PROMPTS, RESPONSES, METADATA) == [2.0, -1.0, 0.5]
    assert Ensemble(members, "min")(PROMPTS, RESPONSES, METADATA) == [1.0, -2.0, 0.5]
    with pytest.raises(RewardError, match="reward 'rm2' returned 1 scores for 3 responses"):
        Ensemble([members[0], ("rm2", by_index(1.0))])(PROMPTS, RESPONSES, METADATA)


def test_length_penalty_in_tokens_and_chars():
    assert LengthPenalty(0.5, target=4)(PROMPTS, RESPONSES, METADATA) == [0.0, -0.5, -2.5]
    assert LengthPenalty(0.1, target=10, unit="chars")(PROMPTS, RESPONSES, {}) == pytest.approx([0.0, -0.6, -0.8])
    with pytest.raises(RewardError, match="needs metadata\\['response_length'\\]"):
        LengthPenalty(0.5)(PROMPTS, RESPONSES, {})


def test_rewards_specs_build_a_weighted_sum_of_a_function_and_a_length_penalty():
    reward = build_reward_function(rewards=[
        RewardSpec(kind="function", spec="alignflow.tasks.arithmetic:exact_match", weight=2.0, timeout=5),
        RewardSpec(kind="length_penalty", coef=0.25, target=5),
    ], dtype="fp32")
    assert isinstance(reward, WeightedSum)
    assert reward(PROMPTS, RESPONSES, METADATA) == [2.0, 0.0, 1.0]


def test_the_legacy_key_is_a_guarded_function_and_exactly_one_key_is_allowed():
    reward = build_reward_function(reward_function="alignflow.tasks.arithmetic:exact_match")
    assert isinstance(reward, GuardedReward) and reward.timeout == 10.0
    assert reward(PROMPTS, RESPONSES, METADATA) == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="exactly one of reward_model, reward_function and rewards"):
        build_reward_function(reward_function="a:b", rewards=[RewardSpec(spec="a:b")])
    with pytest.raises(RewardError, match=r"sample 0 \(source a:1, response '5'\) raised ValueError: no reference"):
        reward(PROMPTS[:1], ["5"], {"source": ["a:1"], "reference": [None]})

"""Rewards built from rewards: a weighted sum of terms, an ensemble, and a length penalty.

Each is itself a :class:`~alignflow.rewards.base.RewardFunction`, so they nest and the reward
worker never knows which it has. Every member's scores are checked (one finite float per
response) before they are combined, so a bad member is named instead of poisoning the sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Literal

from alignflow.data.types import Message
from alignflow.rewards.base import RewardFunction
from alignflow.rewards.guard import RewardError, check_scores


class WeightedSum:
    """``sum_k weight_k * reward_k``; ``terms`` are ``(name, weight, reward)`` triples."""

    def __init__(self, terms: Sequence[tuple[str, float, RewardFunction]]) -> None:
        if not terms:
            raise ValueError("a weighted sum needs at least one term")
        self.terms = list(terms)

    def __call__(self, prompts: list[list[Message]], responses: list[str], metadata: dict[str, list]) -> list[float]:
        total = [0.0] * len(responses)
        for name, weight, reward in self.terms:
            scores = check_scores(name, reward(prompts, responses, metadata), responses, metadata)
            total = [t + weight * s for t, s in zip(total, scores)]
        return total


class Ensemble:
    """Several rewards (usually reward models trained on different seeds or data) reduced per sample.

    ``mean`` averages out each model's idiosyncratic errors; ``min`` is pessimistic: the policy
    gains only where every member agrees, which makes any single model's blind spot harder to exploit.
    """

    def __init__(self, members: Sequence[tuple[str, RewardFunction]], reduce: Literal["mean", "min"] = "mean") -> None:
        if reduce not in ("mean", "min"):
            raise ValueError(f"reduce must be mean or min, got {reduce!r}")
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members, self.reduce = list(members), reduce

    def __call__(self, prompts: list[list[Message]], responses: list[str], metadata: dict[str, list]) -> list[float]:
        scores = [check_scores(name, reward(prompts, responses, metadata), responses, metadata)
                  for name, reward in self.members]
        combine = fmean if self.reduce == "mean" else min
        return [combine(per_sample) for per_sample in zip(*scores)]


class LengthPenalty:
    """``-coef * max(0, length - target)``: free up to ``target``, then linear in the excess.

    ``unit="tokens"`` counts policy tokens from ``metadata["response_length"]`` (set by the reward
    worker), the length the policy actually controls; ``"chars"`` counts characters of the text.
    """

    def __init__(self, coef: float, target: int = 0, unit: Literal["tokens", "chars"] = "tokens") -> None:
        if unit not in ("tokens", "chars"):
            raise ValueError(f"unit must be tokens or chars, got {unit!r}")
        self.coef, self.target, self.unit = coef, target, unit

    def __call__(self, prompts: list[list[Message]], responses: list[str], metadata: dict[str, list]) -> list[float]:
        if self.unit == "chars":
            lengths = [len(response) for response in responses]
        elif "response_length" in metadata:
            lengths = metadata["response_length"]
        else:
            raise RewardError("length_penalty with unit=tokens needs metadata['response_length'] (the reward "
                              "worker sets it); use unit: chars outside the RL loop")
        return [-self.coef * max(0, int(length) - self.target) for length in lengths]

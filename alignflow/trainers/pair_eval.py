"""Evaluation helpers shared by the preference trainers (reward model, DPO)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from alignflow.algorithms.preference import pairwise_wins
from alignflow.data.tokenize import Encoded


def source_name(location: str) -> str:
    """``.../helpful-base.jsonl.gz:12`` -> ``helpful-base``: the file a row came from."""
    name = Path(location.rsplit(":", 1)[0]).name
    return name.split(".", 1)[0] or name


def accuracy_by_source(sources: list[str], chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """Accuracy per source file when validation mixes several (an average can hide a subset below chance).

    Ties count as half right, as in ``preference_metrics``: DPO's implicit rewards are exactly
    tied before the first update, and a tie is a coin flip, not a loss.
    """
    names = sorted(set(sources))
    if len(names) < 2:
        return {}
    correct = pairwise_wins(chosen, rejected)
    index = torch.tensor([names.index(s) for s in sources])
    return {f"accuracy/{name}": float(correct[index == i].mean()) for i, name in enumerate(names)}


def response_lengths(pairs: Sequence[tuple[Encoded, Encoded]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected response lengths in tokens, ``(pairs,)`` each (the prompt is shared)."""
    return (torch.tensor([len(c.response_ids) for c, _ in pairs]),
            torch.tensor([len(r.response_ids) for _, r in pairs]))


def length_baseline(pairs: Sequence[tuple[Encoded, Encoded]], sources: list[str]) -> dict[str, float]:
    """The accuracy of "the longer response wins" on the same pairs, overall and per source.

    Length is the cheapest preference signal and the one reward models learn first (Singhal et al.
    2023), so a preference model shows that it learnt more only by beating this. On HH-RLHF it is
    right on the helpful files (~60%) and wrong on harmless-base (~44%), where the refusal the
    labellers chose tends to be the shorter answer.
    """
    if not pairs:
        return {}
    chosen, rejected = response_lengths(pairs)
    per_source = accuracy_by_source(sources, chosen, rejected)
    return {"length_baseline/accuracy": float(pairwise_wins(chosen, rejected).mean()),
            **{f"length_baseline/{key}": value for key, value in per_source.items()}}


def against_length_baseline(metrics: dict[str, float]) -> str | None:
    """One line for the end of a run: the final validation accuracy beside the length rule's."""
    if "eval_accuracy" not in metrics or "eval_length_baseline/accuracy" not in metrics:
        return None
    return (f"validation accuracy {metrics['eval_accuracy']:.1%}; "
            f"\"the longer response wins\" scores {metrics['eval_length_baseline/accuracy']:.1%} on the same pairs")


def length_correlation(rewards: torch.Tensor, lengths: torch.Tensor) -> float:
    """Pearson correlation of rewards with response lengths: near 1, the model mostly counts tokens.
    0 when either is constant (no linear relation to measure)."""
    rewards, lengths = rewards.double(), lengths.double()
    if rewards.numel() < 2 or rewards.std() == 0 or lengths.std() == 0:
        return 0.0
    return float(torch.corrcoef(torch.stack([rewards, lengths]))[0, 1])


def calibration_bins(r_chosen: torch.Tensor, r_rejected: torch.Tensor, n_bins: int = 10) -> list[dict[str, float]]:
    """The reliability diagram of the Bradley-Terry probabilities ``p = sigmoid(r_chosen - r_rejected)``.

    Folded onto the predicted winner as in ``calibration_error`` (algorithms/preference.py):
    confidence ``max(p, 1 - p)`` in ``n_bins`` equal bins over [0.5, 1], correctness 1 / 0.5 / 0.
    One dict per bin: ``low``, ``high`` (its edges), ``count``, ``confidence`` and ``accuracy`` (the
    means; NaN in an empty bin). Args: ``(pairs,)`` each.
    """
    p = torch.sigmoid((r_chosen - r_rejected).double())
    confidence = torch.maximum(p, 1.0 - p)
    correct = (p > 0.5).double() + 0.5 * (p == 0.5).double()
    index = ((confidence - 0.5) / 0.5 * n_bins).long().clamp(0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        inside = index == b
        count = int(inside.sum())
        bins.append({"low": 0.5 + 0.5 * b / n_bins, "high": 0.5 + 0.5 * (b + 1) / n_bins, "count": count,
                     "confidence": float(confidence[inside].mean()) if count else float("nan"),
                     "accuracy": float(correct[inside].mean()) if count else float("nan")})
    return bins


def expected_calibration_error(bins: Sequence[dict[str, float]]) -> float:
    """ECE from :func:`calibration_bins`: ``sum_b (n_b / N) * |accuracy_b - confidence_b|`` (Guo et al.
    2017); 0 when every bin's accuracy equals its mean confidence, up to 0.5 for a sure coin flipper."""
    total = sum(b["count"] for b in bins)
    if not total:
        return 0.0
    return sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / total

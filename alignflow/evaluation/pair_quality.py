"""How well a scorer tells chosen from rejected on preference pairs, beside "the longer response wins".

Used by ``alignflow rm eval`` (one model, all the detail) and by ``alignflow eval`` (is the proxy,
is the judge, worth believing?). Works on plain scores, so any judge kind fits: a reward-model
folder, a DPO policy's implicit reward, a classifier, a scikit-learn text model.

A judge is *weak* when the lower end of its accuracy interval does not clear the length rule's
accuracy on the same pairs: then "the judge prefers policy B" may only mean "B writes longer",
and its win rates are not evidence of better responses (Singhal et al. 2023, "A Long Way to Go").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import torch

from alignflow.algorithms.preference import pairwise_wins
from alignflow.evaluation.metrics import mean_ci
from alignflow.trainers.pair_eval import calibration_bins, expected_calibration_error, length_correlation


@dataclass(frozen=True)
class PairScores:
    """A scorer's rewards on ``(pairs,)`` chosen and rejected responses, their lengths and source files."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_length: torch.Tensor
    rejected_length: torch.Tensor
    sources: list[str]


@dataclass(frozen=True)
class Bootstrap:
    n: int = 1000
    level: float = 0.95
    seed: int = 0


def pair_quality(scores: PairScores, boot: Bootstrap = Bootstrap(), n_bins: int = 10) -> dict[str, Any]:
    """Accuracy (ties half) and the length rule, overall and per source, each with a seeded bootstrap
    interval over pairs; the rewards' correlation with length; Bradley-Terry calibration."""
    wins = pairwise_wins(scores.chosen, scores.rejected)
    length_wins = pairwise_wins(scores.chosen_length, scores.rejected_length)
    both = torch.cat([scores.chosen, scores.rejected])
    bins = calibration_bins(scores.chosen, scores.rejected, n_bins)
    by_source = {}
    for name in sorted(set(scores.sources)):
        inside = torch.tensor([s == name for s in scores.sources])
        by_source[name] = _accuracies(wins[inside], length_wins[inside], boot)
    return {
        **_accuracies(wins, length_wins, boot),
        "by_source": by_source if len(by_source) > 1 else {},
        "mean_margin": float((scores.chosen - scores.rejected).mean()),
        "reward_mean": float(both.mean()),
        "reward_std": float(both.std()) if both.numel() > 1 else 0.0,
        "length_correlation": length_correlation(both, torch.cat([scores.chosen_length, scores.rejected_length])),
        "calibration": {"ece": expected_calibration_error(bins), "bins": bins},
    }


def _accuracies(wins: torch.Tensor, length_wins: torch.Tensor, boot: Bootstrap) -> dict[str, Any]:
    def interval(values: torch.Tensor) -> dict[str, Any]:
        return mean_ci(values.tolist(), n_bootstrap=boot.n, level=boot.level, seed=boot.seed).as_dict()

    return {"pairs": int(wins.numel()), "accuracy": interval(wins), "length_rule": interval(length_wins)}


def saved_pair_quality(metrics: dict[str, Any], level: float = 0.95) -> dict[str, Any] | None:
    """The same headline from the numbers ``rm train`` saves in ``alignflow.json`` (``model/``: ``eval_accuracy``,
    ``eval_length_baseline/accuracy``, ``val_pairs``; ``best/``: the same without ``eval_``), or None when
    they are missing. The interval is Wilson's for a binomial proportion: the saved numbers keep no
    per-pair outcomes to resample."""
    accuracy = metrics.get("eval_accuracy", metrics.get("accuracy"))
    length_rule = metrics.get("eval_length_baseline/accuracy", metrics.get("length_baseline/accuracy"))
    pairs = int(metrics.get("val_pairs") or 0)
    if accuracy is None or length_rule is None or pairs < 1:
        return None
    low, high = wilson_interval(accuracy, pairs, level)
    return {"pairs": pairs, "accuracy": {"value": accuracy, "low": low, "high": high, "n": pairs, "level": level,
                                         "method": "wilson"},
            "length_rule": {"value": length_rule, "low": None, "high": None, "n": pairs, "level": level,
                            "method": "none"}}


def wilson_interval(proportion: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion observed on ``n`` trials (Wilson 1927)."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    centre = (proportion + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(proportion * (1 - proportion) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def labelled_quality(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """A classifier's headline from the numbers its trainer saves (``test_accuracy`` on held-out labelled
    texts, the accuracy on their first words, the majority label's share), or None when they are missing.
    Such a judge rates one property (a review's sentiment), not preferences: its baseline is always
    answering the majority label, and length plays no part in its labels."""
    accuracy = metrics.get("test_accuracy")
    if not isinstance(accuracy, dict):
        return None
    short = {key: value for key, value in metrics.items() if key.startswith("test_accuracy_first")}
    majority = metrics.get("test_majority_rate", 0.5)  # older folders: IMDB's balanced test set
    return {"kind": "labels", "texts": accuracy["n"], "accuracy": {**accuracy, "method": "wilson"},
            "short": next(iter(short.items()), None), "majority_rule": {"value": majority, "low": None, "high": None}}


def is_weak(quality: dict[str, Any]) -> bool:
    """The accuracy interval's lower end does not clear the baseline: the length rule's accuracy on the
    same pairs, or the majority label's share for a classifier."""
    low = quality["accuracy"]["low"]
    return (quality["accuracy"]["value"] if low is None else low) <= baseline(quality)[1]["value"]


def baseline(quality: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name, estimate) of what a scorer must beat: the length rule, or a classifier's majority label."""
    return ("majority_rule", quality["majority_rule"]) if quality.get("kind") == "labels" else (
        "length_rule", quality["length_rule"])


def verdict(role: str, quality: dict[str, Any] | None) -> str:
    """One sentence on what a judge's (or the proxy's) scores can and cannot support."""
    if quality is None:
        return (f"The {role} was not measured on preference pairs (no saved validation accuracy and no "
                "judge_eval_pairs), so nothing here says whether it beats \"the longer response wins\".")
    acc = quality["accuracy"]
    if quality.get("kind") == "labels":
        return _labels_verdict(role, quality)
    rule = quality["length_rule"]["value"]
    measured = (f"{acc['value']:.1%} [{acc['low']:.1%}, {acc['high']:.1%}] on {quality['pairs']} held-out pairs "
                f"against {rule:.1%} for \"the longer response wins\"")
    if is_weak(quality):
        return (f"The {role} scores {measured}: its scores can show that responses changed, "
                "but its win rates and shifts are not evidence that they got better.")
    return (f"The {role} scores {measured}: its win rates are evidence of preferences beyond length, "
            "on pairs like those it was measured on.")


def _labels_verdict(role: str, quality: dict[str, Any]) -> str:
    acc, majority = quality["accuracy"], quality["majority_rule"]["value"]
    short = ""
    if quality.get("short"):
        key, value = quality["short"]
        words = key.removeprefix("test_accuracy_first").removesuffix("words")
        short = f" ({value['value']:.1%} on their first {words} words)"
    measured = (f"labels {acc['value']:.1%} [{acc['low']:.1%}, {acc['high']:.1%}] of {quality['texts']} held-out "
                f"labelled texts correctly{short} against {majority:.1%} for always the majority label")
    if is_weak(quality):
        return f"The {role} {measured}: its rates are not evidence of the property it was trained to label."
    return (f"The {role} {measured}: its rates are evidence of that property on texts like those, less so "
            "on texts much shorter than them.")

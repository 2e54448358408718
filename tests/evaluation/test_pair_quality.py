"""Pair accuracy, the length rule, calibration and the weak-judge rule on constructed pairs of known answer."""

from __future__ import annotations

import math

import pytest
import torch

from alignflow.algorithms.preference import calibration_error
from alignflow.evaluation.judge_quality import judge_entry
from alignflow.evaluation.pair_quality import (
    Bootstrap,
    PairScores,
    is_weak,
    labelled_quality,
    pair_quality,
    saved_pair_quality,
    verdict,
    wilson_interval,
)
from alignflow.trainers.pair_eval import calibration_bins, expected_calibration_error


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def scores(chosen, rejected, chosen_len=None, rejected_len=None, sources=None) -> PairScores:
    n = len(chosen)
    return PairScores(torch.tensor(chosen, dtype=torch.float), torch.tensor(rejected, dtype=torch.float),
                      torch.tensor(chosen_len or [1] * n), torch.tensor(rejected_len or [1] * n),
                      sources or ["a"] * n)


def test_accuracy_counts_ties_half_and_the_length_rule_is_measured_on_the_same_pairs():
    # 3 right, 1 tie, 1 wrong -> 3.5 / 5; the longer response is chosen in 2 pairs, tied in 1 -> 2.5 / 5.
    q = pair_quality(scores([1, 1, 1, 0, 0], [0, 0, 0, 0, 1], [9, 9, 1, 5, 1], [1, 1, 9, 5, 9]), Bootstrap(n=200))
    assert q["pairs"] == 5
    assert q["accuracy"]["value"] == pytest.approx(0.7)
    assert q["length_rule"]["value"] == pytest.approx(0.5)
    assert q["accuracy"]["low"] <= 0.7 <= q["accuracy"]["high"]


def test_per_source_accuracy_and_seeded_intervals():
    s = scores([1.0] * 6 + [0.0] * 4, [0.0] * 10, sources=["helpful"] * 6 + ["harmless"] * 4)
    first, again = pair_quality(s, Bootstrap(n=300, seed=3)), pair_quality(s, Bootstrap(n=300, seed=3))
    assert first["by_source"]["helpful"]["accuracy"]["value"] == 1.0
    assert first["by_source"]["harmless"]["accuracy"]["value"] == 0.5  # all ties
    assert first["accuracy"] == again["accuracy"]  # the bootstrap is seeded


def test_a_model_right_as_often_as_it_is_sure_has_zero_calibration_error():
    d = logit(0.8)  # every pair at confidence 0.8; 8 of 10 predicted right
    chosen, rejected = torch.tensor([d] * 8 + [-d] * 2), torch.zeros(10)
    bins = calibration_bins(chosen, rejected)
    assert expected_calibration_error(bins) == pytest.approx(0.0, abs=1e-9)
    full = [b for b in bins if b["count"]]
    assert len(full) == 1 and full[0]["count"] == 10 and full[0]["accuracy"] == pytest.approx(0.8)


def test_an_overconfident_model_has_the_gap_as_its_calibration_error():
    d = logit(0.9)  # sure at 0.9 but right 6 times in 10, plus 10 pairs at 0.6 all right
    chosen = torch.tensor([d] * 6 + [-d] * 4 + [logit(0.6)] * 10)
    rejected = torch.zeros(20)
    expected = 0.5 * abs(0.6 - 0.9) + 0.5 * abs(1.0 - 0.6)
    ece = expected_calibration_error(calibration_bins(chosen, rejected))
    assert ece == pytest.approx(expected)
    assert ece == pytest.approx(float(calibration_error(chosen, rejected)), abs=1e-6)  # same as rm train's


def test_wilson_interval_matches_the_textbook_value():
    low, high = wilson_interval(0.5, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))


def test_saved_numbers_of_rm_train_give_the_same_headline():
    q = saved_pair_quality({"eval_accuracy": 0.641, "eval_length_baseline/accuracy": 0.594, "val_pairs": 64})
    assert q["pairs"] == 64 and q["accuracy"]["method"] == "wilson"
    assert q["accuracy"]["low"] < 0.594  # 64 pairs cannot tell 64% from 59%
    assert is_weak(q)
    assert saved_pair_quality({"eval_accuracy": 0.7}) is None  # no length rule saved: not measured
    best = saved_pair_quality({"accuracy": 0.641, "length_baseline/accuracy": 0.594, "val_pairs": 64})  # best/
    assert best["accuracy"] == q["accuracy"]


def test_the_weak_judge_rule_fires_at_the_length_rule_and_not_on_a_good_judge():
    lengths_chosen, lengths_rejected = [2] * 240 + [1] * 160, [1] * 240 + [2] * 160  # longer wins 60%
    # A judge that is the length rule: it prefers exactly the longer response.
    at_rule = pair_quality(scores([float(c) for c in lengths_chosen], [float(r) for r in lengths_rejected],
                                  lengths_chosen, lengths_rejected), Bootstrap(n=300))
    # A good judge: right on 90% of the pairs, whatever their lengths.
    good = pair_quality(scores([1.0] * 360 + [0.0] * 40, [0.0] * 360 + [1.0] * 40, lengths_chosen,
                               lengths_rejected), Bootstrap(n=300))
    assert at_rule["accuracy"]["value"] == pytest.approx(at_rule["length_rule"]["value"]) == pytest.approx(0.6)
    assert is_weak(at_rule) and not is_weak(good)
    assert judge_entry("judge", "rm", at_rule, "pairs")["weak"] is True
    assert judge_entry("judge", "rm", good, "pairs")["weak"] is False
    assert "not evidence" in verdict("judge", at_rule) and "beyond length" in verdict("judge", good)
    assert judge_entry("judge", "clf", None, None)["weak"] is None  # not measured: no claim either way


def test_a_classifier_judge_is_measured_on_its_labelled_texts_against_the_majority_label(tmp_path):
    from alignflow.evaluation.judge_quality import _saved_quality

    def saved(correct: int, n: int = 1000) -> dict:
        low, high = wilson_interval(correct / n, n)
        return {"test_accuracy": {"value": correct / n, "low": low, "high": high, "n": n},
                "test_accuracy_first40words": {"value": 0.75, "low": 0.72, "high": 0.78, "n": n},
                "test_majority_rate": 0.52}

    good, chance = labelled_quality(saved(890)), labelled_quality(saved(530))
    assert not is_weak(good) and is_weak(chance)  # 53% [49.9, 56.1] does not clear always-majority's 52%
    assert "89.0% [86.9%, 90.8%] of 1000 held-out labelled texts correctly (75.0% on their first 40 words)" in (
        verdict("judge", good))
    assert "not evidence" in verdict("judge", chance)
    # A TF-IDF judge keeps its metrics in text_classifier.json; an rm-train folder has none of these keys.
    (tmp_path / "text_classifier.json").write_text(__import__("json").dumps({"metrics": saved(890)}))
    assert _saved_quality(str(tmp_path), 0.95) == good
    assert labelled_quality({"eval_accuracy": 0.6}) is None

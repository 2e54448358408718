import math

import numpy as np
import pytest

from alignflow.evaluation.metrics import (
    Estimate,
    bootstrap_ci,
    distinct_n,
    eos_rate,
    length_controlled_win_rate,
    length_stats,
    mean_ci,
    mean_repeated_ngram_rate,
    pairwise_outcomes,
    repeated_ngram_rate,
    summarize_responses,
    t_quantile,
    win_rate,
    win_rate_from_outcomes,
    word_tokens,
)

# ----- win rate -----------------------------------------------------------------------------


def test_win_rate_counts_ties_as_half():
    # 3>1 win, 1<2 loss, 2=2 tie, 2>0 win -> (1 + 0 + 0.5 + 1) / 4
    result = win_rate([3, 1, 2, 2], [1, 2, 2, 0], n_bootstrap=200)
    assert result.value == pytest.approx(0.625)
    assert (result.wins, result.ties, result.losses, result.n) == (2, 1, 1, 4)
    assert 0.0 <= result.low <= result.value <= result.high <= 1.0
    assert result.as_dict()["wins"] == 2


def test_tie_tolerance():
    assert pairwise_outcomes([1.0, 1.05, 2.0], [1.02, 1.0, 1.0], tie_tolerance=0.1).tolist() == [0.5, 0.5, 1.0]


def test_win_rate_interval_is_seeded_and_narrows_with_more_prompts():
    rng = np.random.default_rng(0)
    small_a, small_b = rng.normal(size=20), rng.normal(size=20)
    first = win_rate(small_a, small_b, seed=3)
    assert first == win_rate(small_a, small_b, seed=3)
    assert mean_ci(small_a, seed=3) != mean_ci(small_a, seed=4)
    big = win_rate(rng.normal(size=2000), rng.normal(size=2000), seed=3)
    assert big.high - big.low < first.high - first.low
    assert big.low < 0.5 < big.high  # same distribution: 0.5 inside the 95% interval


def test_win_rate_rejects_mismatched_or_nan_scores():
    with pytest.raises(ValueError, match="equal-length"):
        win_rate([1, 2], [1])
    with pytest.raises(ValueError, match="NaN"):
        win_rate([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="no values"):
        win_rate([], [])


def test_win_rate_from_outcomes():
    result = win_rate_from_outcomes([1, 0.5, 0, 1])
    assert (result.value, result.wins, result.ties, result.losses) == (0.625, 2, 1, 1)
    averaged = win_rate_from_outcomes([0.75, 0.25, 0.5])
    assert (averaged.value, averaged.wins, averaged.ties, averaged.losses) == (0.5, 1, 1, 1)
    with pytest.raises(ValueError, match="outcomes"):
        win_rate_from_outcomes([2])


# ----- intervals ----------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [(1, 12.7062), (2, 4.3027), (3, 3.1824), (10, 2.2281), (30, 2.0423),
                                              (5000, 1.9600)])
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-4)


def test_mean_t_interval_hand_example():
    # mean 2, sample std 1, n 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.3027 / 1.7321 = 2.4841
    result = mean_ci([1.0, 2.0, 3.0], method="t")
    assert result == Estimate(2.0, pytest.approx(2 - 2.48413, abs=1e-4), pytest.approx(2 + 2.48413, abs=1e-4),
                              3, 0.95, "t")


def test_mean_bootstrap_interval():
    values = np.random.default_rng(1).normal(loc=5.0, size=400)
    boot, t = mean_ci(values), mean_ci(values, method="t")
    assert boot.method == "bootstrap" and boot.value == pytest.approx(values.mean())
    assert boot.low == pytest.approx(t.low, abs=0.03) and boot.high == pytest.approx(t.high, abs=0.03)
    assert mean_ci([7.0]) == Estimate(7.0, 7.0, 7.0, 1, 0.95, "none")
    with pytest.raises(ValueError, match="method"):
        mean_ci([1.0], method="normal")
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=95)


def test_bootstrap_custom_statistic_and_chunking():
    values = np.arange(10.0)
    low, high = bootstrap_ci(values, np.median, n_bootstrap=300, seed=0)
    assert 1.0 <= low <= 4.5 <= high <= 8.0
    # The vectorised mean resamples the same indices whatever the chunk size.
    assert bootstrap_ci(values, n_bootstrap=50, seed=2) == bootstrap_ci(values, n_bootstrap=50, seed=2)


# ----- length-controlled win rate -----------------------------------------------------------


def test_length_controlled_win_rate_removes_a_pure_length_preference():
    # The judge prefers the longer response 80% of the time, whoever wrote it; A is longer in 15
    # of 20 pairs. Raw win rate: (12 + 1) / 20 = 0.65. At equal length A has no edge: LC = 0.5.
    wins_when_longer = [1] * 12 + [0] * 3
    wins_when_shorter = [1] * 1 + [0] * 4
    a = wins_when_longer + wins_when_shorter
    b = [0.5] * 20
    lengths_a = [110] * 15 + [90] * 5
    lengths_b = [100] * 20
    result = length_controlled_win_rate(a, b, lengths_a, lengths_b, n_bootstrap=200)
    assert result.raw_win_rate == pytest.approx(0.65)
    assert result.length_coef > 0
    assert result.value == pytest.approx(0.5, abs=0.02)
    assert result.low < 0.5 < result.high


def test_length_controlled_equals_raw_when_lengths_match():
    a, b = [1, 1, 1, 0, 0.5], [0, 0, 0, 1, 0.5]
    result = length_controlled_win_rate(a, b, [10] * 5, [10] * 5, n_bootstrap=100)
    assert result.value == pytest.approx(0.7, abs=1e-6)
    assert result.raw_win_rate == pytest.approx(0.7)


def test_length_controlled_survives_perfect_separation_and_all_wins():
    a, b = [1, 1, 0, 0], [0, 0, 1, 1]
    result = length_controlled_win_rate(a, b, [20, 20, 0, 0], [10] * 4, n_bootstrap=50)
    assert math.isfinite(result.value) and result.value == pytest.approx(0.5, abs=0.01)
    everything = length_controlled_win_rate([1, 1, 1], [0, 0, 0], [1, 2, 3], [1, 1, 1], n_bootstrap=20)
    assert everything.value > 0.999


# ----- text metrics -------------------------------------------------------------------------


def test_word_tokens():
    assert word_tokens("Hi, you!  It's") == ["hi", ",", "you", "!", "it", "'", "s"]


def test_distinct_n_hand_example():
    responses = ["a b a", "b c"]
    # unigrams a b a b c: 3 unique / 5; bigrams ab ba bc: 3 / 3
    assert distinct_n(responses, 1) == pytest.approx(3 / 5)
    assert distinct_n(responses, 2) == 1.0
    assert distinct_n(["a a a a"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["", "x"], 2) == 0.0


def test_repeated_ngram_rate_hand_example():
    assert repeated_ngram_rate("a b a b a b", 2) == pytest.approx(3 / 5)
    assert repeated_ngram_rate("a b c d", 2) == 0.0
    assert repeated_ngram_rate("a b", 3) == 0.0  # no trigram at all
    assert repeated_ngram_rate(["x", "x", "x"], 1) == pytest.approx(2 / 3)
    assert mean_repeated_ngram_rate(["a b a b a b", "a b c d"], 2) == pytest.approx(0.3)


def test_eos_rate_and_length_stats():
    assert eos_rate([True, False, True, True]) == 0.75
    stats = length_stats([1, 2, 3, 4, 10])
    assert (stats.mean, stats.min, stats.median, stats.max, stats.n) == (4.0, 1.0, 3.0, 10.0, 5)
    assert stats.std == pytest.approx(math.sqrt(10.0))  # deviations -3 -2 -1 0 6 -> 50 / 5
    assert stats.p90 == pytest.approx(7.6)  # linear between 4 (80%) and 10 (100%)
    with pytest.raises(ValueError):
        eos_rate([])


def test_summarize_responses():
    summary = summarize_responses("policy", ["a b a b a b", "a b c d"], [7, 5], [True, False],
                                  proxy_reward=[1.0, 3.0], judge_score=0.4, step=10, ngram_n=2)
    assert summary.proxy_reward == 2.0 and summary.judge_score == 0.4 and summary.step == 10
    assert summary.length.mean == 6.0 and summary.eos_rate == 0.5
    assert summary.repeated_ngram_rate == pytest.approx(0.3)
    assert summary.distinct_1 == pytest.approx(4 / 10)
    assert summary.as_dict()["length"]["max"] == 7.0
    with pytest.raises(ValueError, match="token counts"):
        summarize_responses("x", ["a"], [1, 2], [True])

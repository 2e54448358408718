"""Pure evaluation metrics on plain Python/numpy data: win rates, confidence intervals, diversity.

Every function takes lists of numbers or strings and returns floats or small frozen dataclasses
(``as_dict()`` gives what a report or ``summary.json`` needs); nothing here loads a model.

Confidence intervals are percentile bootstraps over prompts (resampling prompts with replacement,
seeded, so a report is reproducible) or, for means, Student-t intervals. Win rates count ties as
half a win, as in AlpacaEval and MT-Bench.

Length-controlled win rate: a logistic regression of the outcome on the (squashed) length
difference, read at zero difference, a simplified AlpacaEval 2 LC (Dubois et al. 2024,
"Length-Controlled AlpacaEval", arXiv:2404.04475; their per-instruction difficulty term is
dropped). Chosen over "win rate within length-matched pairs" because it uses every pair: small
evaluation sets leave few pairs of matching length, and which pairs count as matched would hinge
on an arbitrary tolerance.

Text metrics work on lower-cased word tokens (runs of word characters, and each punctuation mark
on its own, see :func:`word_tokens`), so they do not depend on any model's tokenizer and
compare across models. Pass ``tokenize=`` to use another split.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

Tokenize = Callable[[str], list[str]]

_WORD = re.compile(r"\w+|[^\w\s]")
# Above this many degrees of freedom the t quantile equals the normal one to 4 significant digits.
_NORMAL_DF = 2000
_BOOTSTRAP_CELLS = 2_000_000  # resample matrix entries per chunk (16 MB of int64 indices)


# ----------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided confidence interval ``[low, high]`` at ``level``."""

    value: float
    low: float
    high: float
    n: int  # observations (prompts) behind the estimate
    level: float
    method: str  # "bootstrap", "t" or "none" (too few observations for an interval)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WinRate(Estimate):
    """Win rate of A over B (ties count half) with its interval, and the raw counts."""

    wins: int
    ties: int
    losses: int


@dataclass(frozen=True)
class LengthControlledWinRate(Estimate):
    """Win rate predicted at zero length difference; ``raw_win_rate`` is the uncontrolled one.

    ``length_coef`` is the logistic-regression slope on ``tanh(length difference / its std)``:
    positive means the judge prefers the longer response.
    """

    raw_win_rate: float
    length_coef: float


@dataclass(frozen=True)
class LengthStats:
    mean: float
    std: float
    min: float
    median: float
    p90: float
    max: float
    n: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- intervals


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] | None = None,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic`` (default: the mean) over resampled rows.

    ``values`` may be 2-D (rows are resampled together, e.g. paired scores). A custom
    ``statistic`` gets the resampled array; the mean is vectorised across resamples.
    """
    data = np.asarray(values, dtype=float)
    _check_ci_args(len(data), n_bootstrap, level)
    rng = np.random.default_rng(seed)
    n = len(data)
    if statistic is None:
        chunk = max(1, _BOOTSTRAP_CELLS // n)
        stats = np.concatenate([
            data[rng.integers(0, n, size=(min(chunk, n_bootstrap - start), n))].mean(axis=1)
            for start in range(0, n_bootstrap, chunk)
        ])
    else:
        stats = np.array([statistic(data[rng.integers(0, n, size=n)]) for _ in range(n_bootstrap)])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    method: str = "bootstrap",
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean of ``values`` with a ``"bootstrap"`` (percentile) or ``"t"`` (Student) interval.

    A single value gets the degenerate interval ``[value, value]`` and method ``"none"``.
    """
    data = np.asarray(values, dtype=float)
    if method not in ("bootstrap", "t"):
        raise ValueError(f"method must be 'bootstrap' or 't', got {method!r}")
    _check_ci_args(len(data), n_bootstrap, level)
    mean = float(data.mean())
    if len(data) == 1:
        return Estimate(mean, mean, mean, 1, level, "none")
    if method == "t":
        half = t_quantile(0.5 + level / 2.0, len(data) - 1) * float(data.std(ddof=1)) / math.sqrt(len(data))
        return Estimate(mean, mean - half, mean + half, len(data), level, "t")
    low, high = bootstrap_ci(data, n_bootstrap=n_bootstrap, level=level, seed=seed)
    return Estimate(mean, low, high, len(data), level, "bootstrap")


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with integer ``df`` (bisection on the exact CDF).

    numpy has no t distribution and scipy is not a dependency; the CDF of an integer-df t has a
    finite closed form (Abramowitz & Stegun 26.7.3-4), so a bisection on it is exact and short.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be an int >= 1, got {df!r}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if df > _NORMAL_DF:
        return NormalDist().inv_cdf(p)
    high = 1.0
    while _t_cdf(high, df) < p:
        high *= 2.0
    low = 0.0
    for _ in range(100):
        mid = (low + high) / 2.0
        low, high = (mid, high) if _t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2.0


def _t_cdf(t: float, df: int) -> float:
    theta = math.atan(t / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    if df % 2:  # odd: A = 2/pi * (theta + sin * (cos + 2/3 cos^3 + 2*4/(3*5) cos^5 + ...))
        total, term = 0.0, cos
        for j in range(1, (df - 1) // 2 + 1):
            total += term
            term *= 2 * j / (2 * j + 1) * cos * cos
        a = 2.0 / math.pi * (theta + sin * total)
    else:  # even: A = sin * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        total, term = 0.0, 1.0
        for j in range(1, df // 2 + 1):
            total += term
            term *= (2 * j - 1) / (2 * j) * cos * cos
        a = sin * total
    return 0.5 + 0.5 * a


def _check_ci_args(n: int, n_bootstrap: int, level: float) -> None:
    if n == 0:
        raise ValueError("no values: a statistic needs at least one observation")
    if not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be an int >= 1, got {n_bootstrap!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


# ----------------------------------------------------------------------------- win rates


def pairwise_outcomes(
    scores_a: Sequence[float], scores_b: Sequence[float], *, tie_tolerance: float = 0.0
) -> np.ndarray:
    """Per pair: 1 when A scores higher, 0 when lower, 0.5 when within ``tie_tolerance``."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need two equal-length lists, got {len(a)} and {len(b)}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("scores contain NaN")
    diff = a - b
    return np.where(np.abs(diff) <= tie_tolerance, 0.5, (diff > 0).astype(float))


def win_rate(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    *,
    tie_tolerance: float = 0.0,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> WinRate:
    """How often model A's response beats reference B's on the same prompt (ties count half).

    ``scores_a[i]`` and ``scores_b[i]`` score the two responses to prompt ``i`` (reward-model
    scores, or 1/0 judge verdicts). The interval resamples prompts.
    """
    outcomes = pairwise_outcomes(scores_a, scores_b, tie_tolerance=tie_tolerance)
    estimate = mean_ci(outcomes, n_bootstrap=n_bootstrap, level=level, seed=seed)
    return WinRate(**asdict(estimate), wins=int((outcomes == 1).sum()), ties=int((outcomes == 0.5).sum()),
                   losses=int((outcomes == 0).sum()))


def win_rate_from_outcomes(
    outcomes: Sequence[float], *, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0
) -> WinRate:
    """:func:`win_rate` from per-pair outcomes in [0, 1]: 1 win, 0.5 tie, 0 loss, or in between
    (a judge's verdicts averaged over both orders). Counts: above 0.5 is a win, below a loss."""
    data = np.asarray(outcomes, dtype=float)
    if data.ndim != 1 or not ((data >= 0) & (data <= 1)).all():
        raise ValueError("outcomes must be numbers in [0, 1] (1 win, 0.5 tie, 0 loss)")
    estimate = mean_ci(data, n_bootstrap=n_bootstrap, level=level, seed=seed)
    return WinRate(**asdict(estimate), wins=int((data > 0.5).sum()), ties=int((data == 0.5).sum()),
                   losses=int((data < 0.5).sum()))


def length_controlled_win_rate(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    lengths_a: Sequence[float],
    lengths_b: Sequence[float],
    *,
    tie_tolerance: float = 0.0,
    l2: float = 0.01,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> LengthControlledWinRate:
    """The win rate A would have over B if both responses had the same length.

    Fits ``P(A wins) = sigmoid(b0 + b1 * tanh(d / std(d)))`` with ``d = length_a - length_b``
    (ties are outcome 0.5) and reports ``sigmoid(b0)``, the win rate at ``d = 0``. ``tanh`` of the
    standardised difference (as in AlpacaEval 2) keeps a few very long responses from steering
    the fit. ``l2`` is a small ridge penalty on ``b1`` alone, so the fit stays finite when the
    outcome is perfectly separated by length (e.g. the longer response always wins); ``b0`` is
    not penalised, so the controlled rate is not pulled towards 0.5.
    """
    outcomes = pairwise_outcomes(scores_a, scores_b, tie_tolerance=tie_tolerance)
    la, lb = np.asarray(lengths_a, dtype=float), np.asarray(lengths_b, dtype=float)
    if la.shape != outcomes.shape or lb.shape != outcomes.shape:
        raise ValueError(f"need one length per pair: {len(outcomes)} pairs, {len(la)} and {len(lb)} lengths")
    _check_ci_args(len(outcomes), n_bootstrap, level)
    diff = la - lb
    std = float(diff.std())
    x = np.tanh(diff / std) if std > 0 else np.zeros_like(diff)
    rows = np.column_stack([x, outcomes])
    coef = _fit_logistic(x, outcomes, l2)
    raw = float(outcomes.mean())
    low, high = bootstrap_ci(rows, lambda r: _sigmoid(_fit_logistic(r[:, 0], r[:, 1], l2, coef)[0]),
                             n_bootstrap=n_bootstrap, level=level, seed=seed)
    return LengthControlledWinRate(_sigmoid(coef[0]), low, high, len(outcomes), level, "bootstrap",
                                   raw_win_rate=raw, length_coef=float(coef[1]))


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + math.exp(-z))) if z >= 0 else float(math.exp(z) / (1.0 + math.exp(z)))


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, start: np.ndarray | None = None) -> np.ndarray:
    """Newton's method for ``[b0, b1]`` of a logistic regression with soft labels ``y`` in [0, 1].

    All wins (or all losses) have no finite intercept; it is capped at +-20 (sigmoid 1 - 2e-9).
    """
    design = np.column_stack([np.ones_like(x), x])
    penalty = np.diag([0.0, l2])
    coef = np.zeros(2) if start is None else np.array(start, dtype=float)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ coef, -30, 30)))
        grad = design.T @ (p - y) + penalty @ coef
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty + 1e-9 * np.eye(2)
        updated = np.clip(coef - np.linalg.solve(hessian, grad), -20.0, 20.0)
        converged = np.abs(updated - coef).max() < 1e-10  # also stops at the cap
        coef = updated
        if converged:
            break
    return coef


# ----------------------------------------------------------------------------- text metrics


def word_tokens(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: ``"Hi, you!"`` -> ``["hi", ",", "you", "!"]``."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(responses: Sequence[str], n: int, *, tokenize: Tokenize = word_tokens) -> float:
    """Unique n-grams / total n-grams over all of a model's responses (Li et al. 2016).

    0.0 when the responses hold no n-gram at all (empty output is no diversity). The value falls
    as the text grows, so compare models on the same prompts and similar lengths.
    """
    grams = [gram for response in responses for gram in ngrams(tokenize(response), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(response: str | Sequence[str], n: int = 3, *, tokenize: Tokenize = word_tokens) -> float:
    """Fraction of a response's n-grams that repeat an earlier n-gram of the same response.

    ``"a b a b a b"`` with ``n=2`` has bigrams ab, ba, ab, ba, ab: the last three repeat, so 0.6.
    A response shorter than ``n`` tokens has no n-gram and rate 0.0. ``response`` may be a
    pre-tokenized list.
    """
    tokens = tokenize(response) if isinstance(response, str) else list(response)
    grams = ngrams(tokens, n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def mean_repeated_ngram_rate(responses: Sequence[str], n: int = 3, *, tokenize: Tokenize = word_tokens) -> float:
    """:func:`repeated_ngram_rate` averaged over responses (each response weighs the same)."""
    if not responses:
        raise ValueError("no responses")
    return float(np.mean([repeated_ngram_rate(r, n, tokenize=tokenize) for r in responses]))


def eos_rate(has_eos: Sequence[bool]) -> float:
    """Fraction of responses that ended with EOS (the rest hit the token limit)."""
    if len(has_eos) == 0:
        raise ValueError("no responses")
    return float(np.mean(np.asarray(has_eos, dtype=bool)))


def length_stats(lengths: Sequence[float]) -> LengthStats:
    """Mean, population std, min, median, 90th percentile and max of response lengths."""
    data = np.asarray(lengths, dtype=float)
    if data.size == 0:
        raise ValueError("no lengths")
    median, p90 = np.percentile(data, [50, 90])
    return LengthStats(float(data.mean()), float(data.std()), float(data.min()), float(median), float(p90),
                       float(data.max()), int(data.size))


# ----------------------------------------------------------------------------- per-model summary


@dataclass(frozen=True)
class ModelSummary:
    """What the reward-hacking checks (and a report table) need about one model's responses.

    ``proxy_reward``: mean score of the reward model the policy was optimised against.
    ``judge_score``: any independent, higher-is-better score of the same responses (a held-out
    gold reward model's mean, or an LLM judge's win rate against the reference). ``step``: the
    training step, for a trajectory of checkpoints.
    """

    name: str
    n: int
    length: LengthStats  # response tokens (EOS included, as in the RL training logs)
    eos_rate: float
    distinct_1: float
    distinct_2: float
    repeated_ngram_rate: float
    repeated_ngram_n: int = 3
    proxy_reward: float | None = None
    judge_score: float | None = None
    step: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_responses(
    name: str,
    responses: Sequence[str],
    num_tokens: Sequence[int],
    has_eos: Sequence[bool],
    *,
    proxy_reward: float | Sequence[float] | None = None,
    judge_score: float | Sequence[float] | None = None,
    step: int | None = None,
    ngram_n: int = 3,
    tokenize: Tokenize = word_tokens,
) -> ModelSummary:
    """Build a :class:`ModelSummary`; reward arguments may be per-response lists (averaged) or means."""
    if not (len(responses) == len(num_tokens) == len(has_eos)):
        raise ValueError(f"{len(responses)} responses, {len(num_tokens)} token counts, {len(has_eos)} EOS flags")
    return ModelSummary(
        name=name,
        n=len(responses),
        length=length_stats(num_tokens),
        eos_rate=eos_rate(has_eos),
        distinct_1=distinct_n(responses, 1, tokenize=tokenize),
        distinct_2=distinct_n(responses, 2, tokenize=tokenize),
        repeated_ngram_rate=mean_repeated_ngram_rate(responses, ngram_n, tokenize=tokenize),
        repeated_ngram_n=ngram_n,
        proxy_reward=_mean_or_none(proxy_reward),
        judge_score=_mean_or_none(judge_score),
        step=step,
    )


def _mean_or_none(value: float | Sequence[float] | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    values = [float(v) for v in value]
    if not values:
        raise ValueError("an empty list of scores")
    return float(np.mean(values))

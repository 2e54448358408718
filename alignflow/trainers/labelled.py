"""What the classifier jobs share: their ``{text, label}`` splits and held-out accuracy with intervals.

Accuracy is measured on the test texts as they are and on their first ``probe_words`` words: a
policy's response is that short, and a classifier used as a reward or judge must be measured at the
length it will read, not only on whole reviews.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from alignflow.config.classify import LabelledDataConfig
from alignflow.data.labelled import LabelledText, clean_text, first_words, read_labelled


def load_split(source: str, data: LabelledDataConfig, *, max_samples: int | None, sample: int | None = None,
               key: str) -> list[LabelledText]:
    """The well-formed rows of ``source`` with plain text; ``sample``: a seeded subset of that many."""
    read = read_labelled(source, data.labels, max_samples=max_samples)
    if not read.examples:
        first = f"; first problem: {read.issues[0]}" if read.issues else ""
        raise ValueError(f"{key}: {source} has no {{text, label}} rows{first}")
    rows = [LabelledText(clean_text(r.text), r.label, r.source) for r in read.examples]
    if sample is not None and sample < len(rows):
        rows = random.Random(data.seed).sample(rows, sample)
    if len({r.label for r in rows}) < 2 and key == "data.train":
        only = data.labels[rows[0].label]
        raise ValueError(f"{key}: {source} holds only one label ({only}); a classifier needs both")
    return rows


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound near 0 and 1, unlike the normal one)."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy(predicted: list[int], rows: list[LabelledText]) -> dict:
    """``{value, low, high, n}``: the share of rows whose label was predicted, with its interval."""
    correct = sum(int(p == r.label) for p, r in zip(predicted, rows, strict=True))
    low, high = wilson_interval(correct, len(rows))
    return {"value": round(correct / len(rows), 4), "low": round(low, 4), "high": round(high, 4), "n": len(rows)}


def held_out_accuracies(predict: Callable[[list[str]], list[int]], test: list[LabelledText], probe_words: int) -> dict:
    """Accuracy on the test texts and on their first ``probe_words`` words, and the share of the most
    common label (what always answering it would score)."""
    short = [LabelledText(first_words(r.text, probe_words), r.label, r.source) for r in test]
    majority = max(sum(r.label == label for r in test) for label in {r.label for r in test}) / max(len(test), 1)
    return {"test_accuracy": accuracy(predict([r.text for r in test]), test), "test_majority_rate": round(majority, 4),
            f"test_accuracy_first{probe_words}words": accuracy(predict([r.text for r in short]), short)}

"""Deterministic train/validation split."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def train_val_split(examples: Sequence[T], val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Split ``examples`` into ``(train, validation)``: train in the original order, validation in
    a seeded random order, so that any prefix of it (``eval_max_samples``, ``eval_prompts``) is a
    random sample of every source rather than the first file's rows.

    The same seed always picks the same rows (``random.Random`` seeded with an int does not depend
    on the Python hash seed). Validation gets at least one example whenever ``val_fraction > 0``
    and there are two or more examples, and train always keeps at least one.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    count = len(examples)
    val_count = round(count * val_fraction)
    if val_fraction > 0 and count >= 2:
        val_count = min(max(val_count, 1), count - 1)
    order = list(range(count))
    random.Random(seed).shuffle(order)
    val_indices = set(order[:val_count])
    train = [example for index, example in enumerate(examples) if index not in val_indices]
    val = [examples[index] for index in order[:val_count]]
    return train, val

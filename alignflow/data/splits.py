"""Deterministic train/validation split, by row or by prompt (no prompt in both splits)."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def train_val_split(
    examples: Sequence[T], val_fraction: float, seed: int, key: Callable[[T], str] | None = None
) -> tuple[list[T], list[T]]:
    """Split ``examples`` into ``(train, validation)``: train in the original order, validation in
    a seeded random order, so that any prefix of it (``eval_max_samples``, ``eval_prompts``) is a
    random sample of every source rather than the first file's rows.

    The same seed always picks the same rows (``random.Random`` seeded with an int does not depend
    on the Python hash seed). Validation gets at least one example whenever ``val_fraction > 0``
    and there are two or more examples, and train always keeps at least one.

    ``key``: split by group instead (see :func:`group_split`), so rows that share a key (a post
    compared many times) never straddle the two splits.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if key is not None:
        return group_split(examples, val_fraction, seed, key)
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


def group_split(
    examples: Sequence[T], val_fraction: float, seed: int, key: Callable[[T], str]
) -> tuple[list[T], list[T]]:
    """Validation is every group whose seeded hash falls below ``val_fraction``.

    A group's side depends on its key and the seed alone, not on which other rows were read, so
    jobs that read the same posts as different kinds (SFT rows, preference pairs, deduplicated
    prompts) hold out the same posts. Validation comes in hash order (a random sample); only when
    the hash leaves a side empty does the nearest group move over (validation gets one whenever
    ``val_fraction > 0`` and there are two or more groups; train always keeps one).
    """
    position = {name: _uniform(seed, name) for name in dict.fromkeys(key(example) for example in examples)}
    held = {name for name, u in position.items() if u < val_fraction}
    ranked = sorted(position, key=position.get)
    if val_fraction > 0 and not held and len(ranked) >= 2:
        held = {ranked[0]}
    if ranked and len(held) == len(ranked):
        held.discard(ranked[-1])
    train = [example for example in examples if key(example) not in held]
    val = sorted((example for example in examples if key(example) in held), key=lambda e: position[key(e)])
    return train, val


def prompt_key(example: Any) -> str:
    """An example's prompt messages as one string: the group of :func:`group_split` by prompt."""
    return json.dumps(example.prompt, sort_keys=True, ensure_ascii=False)


def _uniform(seed: int, name: str) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``name`` (sha256: the same on every machine and run)."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64

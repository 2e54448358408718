"""The train/validation split is deterministic and never leaves validation empty by rounding."""

import os
import subprocess
import sys

import pytest

from alignflow.data import train_val_split


def test_same_seed_same_split_and_different_seed_different_split():
    items = list(range(100))
    train, val = train_val_split(items, 0.1, seed=3)
    assert (train, val) == train_val_split(items, 0.1, seed=3)
    assert val != train_val_split(items, 0.1, seed=4)[1]
    assert len(val) == 10 and sorted(train + val) == items
    assert train == sorted(train)  # original order kept
    assert val != sorted(val)  # shuffled: a prefix of validation is a random sample, not the first file


def test_a_validation_prefix_mixes_sources():
    rows = ["a"] * 50 + ["b"] * 50  # two files, read one after the other
    _, val = train_val_split(rows, 0.2, seed=0)
    assert {"a", "b"} <= set(val[:8])


def test_split_does_not_depend_on_the_python_hash_seed():
    code = "from alignflow.data.splits import train_val_split; print(train_val_split(list('abcdef'), 0.5, 7)[1])"
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout
        for hash_seed in ("1", "2")
    }
    assert len(outputs) == 1


@pytest.mark.parametrize(
    ("count", "fraction", "val_count"), [(2, 0.01, 1), (5, 0.1, 1), (3, 0.9, 2), (1, 0.5, 0), (0, 0.5, 0)]
)
def test_validation_is_non_empty_when_possible_and_train_keeps_one(count, fraction, val_count):
    train, val = train_val_split(list(range(count)), fraction, seed=0)
    assert len(val) == val_count and len(train) == count - val_count


def test_zero_fraction_and_invalid_fraction():
    assert train_val_split([1, 2, 3], 0.0, seed=0) == ([1, 2, 3], [])
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split([1, 2], 1.0, seed=0)

"""The benchmark's FLOP count (bench/cases/flops.py): a pure function of counted work."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FLOPS_PY = Path(__file__).resolve().parents[2] / "bench" / "cases" / "flops.py"
spec = importlib.util.spec_from_file_location("bench_flops", FLOPS_PY)
flops = importlib.util.module_from_spec(spec)
spec.loader.exec_module(flops)

# SmolLM2-135M: 30 layers, 9 query heads x 64, hidden 576, vocabulary 49152, tied head.
SMOLLM2 = {"params_body": 106_203_456, "layers": 30, "attention_dim": 576, "hidden_size": 576,
           "vocab_size": 49_152}
TINY = {"params_body": 10, "layers": 2, "attention_dim": 3, "hidden_size": 4, "vocab_size": 5}


def test_each_unit_forward_is_two_flops_a_mac_and_training_six():
    assert flops.model_flops(TINY, {"forward": {"tokens": 1}}) == 2 * 10
    assert flops.model_flops(TINY, {"train": {"tokens": 1}}) == 6 * 10
    assert flops.model_flops(TINY, {"forward": {"attention_pairs": 1}}) == 2 * (2 * 2 * 3)  # QK^T + AV, 2 layers
    assert flops.model_flops(TINY, {"forward": {"head_rows": 1}}) == 2 * (4 * 5)
    assert flops.model_flops(TINY, {"train": {"head_rows": 1}}) == 6 * (4 * 5)


def test_passes_add_up():
    train = {"tokens": 7, "attention_pairs": 11, "head_rows": 3}
    forward = {"tokens": 5, "attention_pairs": 2, "head_rows": 13}
    both = flops.model_flops(TINY, {"train": train, "forward": forward})
    assert both == flops.model_flops(TINY, {"train": train}) + flops.model_flops(TINY, {"forward": forward})
    assert flops.model_flops(TINY, {}) == 0


def test_one_smollm2_sequence_by_hand():
    """A 256-token sequence trained with the head at its 100 response positions, against the same
    sequence with the head everywhere (TRL's SFT): only the head term differs."""
    pairs = flops.causal_pairs(256)
    assert pairs == 256 * 257 // 2
    body = 6 * 106_203_456 * 256
    attention = 6 * 2 * 30 * 576 * pairs
    sliced = flops.model_flops(SMOLLM2, {"train": {"tokens": 256, "attention_pairs": pairs, "head_rows": 100}})
    full = flops.model_flops(SMOLLM2, {"train": {"tokens": 256, "attention_pairs": pairs, "head_rows": 256}})
    assert sliced == body + attention + 6 * 576 * 49_152 * 100
    assert full - sliced == 6 * 576 * 49_152 * 156
    # attention is a few percent at this length; the head about a quarter of the body per row
    assert 0.03 < attention / body < 0.05


def test_decoding_from_a_cache_counts_the_cached_keys():
    # 64 tokens decoded one at a time after a 100-token prompt: the i-th attends to 100 + i keys.
    assert flops.causal_pairs(64, past=100) == sum(100 + i for i in range(1, 65))
    assert flops.causal_pairs(1, past=0) == 1


def test_flops_are_not_a_fixed_multiple_of_tokens():
    """Same tokens, different attention lengths or head rows: different FLOPs (the fraction column is
    not the tokens/s ratio in disguise)."""
    short = {"forward": {"tokens": 256, "attention_pairs": 4 * flops.causal_pairs(64), "head_rows": 4}}
    long = {"forward": {"tokens": 256, "attention_pairs": flops.causal_pairs(256), "head_rows": 256}}
    assert flops.model_flops(SMOLLM2, long) > flops.model_flops(SMOLLM2, short)


def test_unknown_pass_kind_is_refused():
    with pytest.raises(ValueError, match="unknown pass kind"):
        flops.model_flops(TINY, {"backward": {"tokens": 1}})

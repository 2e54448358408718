"""The benchmark's counter (bench/cases/benchlib.py): tokens, attention pairs and LM-head rows."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import torch

BENCHLIB_PY = Path(__file__).resolve().parents[2] / "bench" / "cases" / "benchlib.py"


def load_benchlib():
    saved = dict(os.environ)  # benchlib sets offline switches on import; keep this process's environment
    try:
        spec = importlib.util.spec_from_file_location("bench_benchlib", BENCHLIB_PY)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module


benchlib = load_benchlib()
BODY = SimpleNamespace(config=SimpleNamespace(pad_token_id=0))


def test_right_padded_training_batch():
    meter = benchlib.Meter()
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0]])
    mask = (ids != 0).long()
    meter._count_body(BODY, ids, None, mask, None, None)  # gradients on: a trained pass
    assert meter.counts["train"]["tokens"] == 5
    assert meter.counts["train"]["attention_pairs"] == (1 + 2 + 3) + (1 + 2)
    meter._count_head(torch.zeros(2, 4, 8))  # the head at every position: padding not credited
    assert meter.counts["train"]["head_rows"] == 5
    meter._count_head(torch.zeros(3, 8))  # gathered positions (alignflow's HeadAtPositions)
    assert meter.counts["train"]["head_rows"] == 8


def test_packed_rows_restart_positions_per_sequence():
    meter = benchlib.Meter()
    ids = torch.tensor([[5, 6, 7, 8, 9, 0]])
    positions = torch.tensor([[0, 1, 2, 0, 1, 0]])
    with torch.no_grad():
        meter._count_body(BODY, ids, None, None, positions, None)
    assert meter.counts["forward"] == {"tokens": 5, "attention_pairs": (1 + 2 + 3) + (1 + 2), "head_rows": 0}


def test_decoding_from_a_cache_counts_the_cached_keys():
    meter = benchlib.Meter()
    # left-padded prompts of 2 and 3 tokens, then one decoded token each: it attends to 3 and 4 keys
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    with torch.inference_mode():
        meter._count_body(BODY, torch.tensor([[4], [4]]), None, mask, torch.tensor([[2], [3]]), None)
        meter._count_head(torch.zeros(2, 1, 8))
    assert meter.counts["forward"] == {"tokens": 2, "attention_pairs": 3 + 4, "head_rows": 2}


def test_logits_to_keep_slice_counts_only_its_real_columns():
    meter = benchlib.Meter()
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 0]])
    meter._count_body(BODY, ids, None, (ids != 0).long(), None, None)
    meter._count_head(torch.zeros(2, 2, 8))  # the last two columns: 2 + 1 real
    assert meter.counts["train"]["head_rows"] == 3


def test_fused_head_over_flattened_positions_credits_real_ones():
    meter = benchlib.Meter()
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 0]])
    meter._count_body(BODY, ids, None, (ids != 0).long(), None, None)
    meter._count_flat_head(torch.zeros(2 * 3, 8))  # TRL on CPU: every position but the last, per row
    assert meter.counts["train"]["head_rows"] == 3 + 3
    meter._count_flat_head(torch.zeros(4, 8))  # compact (GPU): only labelled positions, all real
    assert meter.counts["train"]["head_rows"] == 6 + 4

"""Small learnable datasets written on the fly for the trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from trainer_data import QUESTIONS, write_jsonl


@pytest.fixture
def sft_file(tmp_path) -> Path:
    rows = [{"prompt": q, "response": "The capital of France is Paris."} for q in QUESTIONS] * 6
    return write_jsonl(tmp_path / "sft.jsonl", rows)


@pytest.fixture
def preference_file(tmp_path) -> Path:
    """Chosen answers are polite and on topic, rejected ones are refusals: a signal a tiny model can learn."""
    rows = [{"prompt": q, "chosen": "Two plus two is four, happy to help.",
             "rejected": "I cannot help with that request because it could hurt someone."}
            for q in QUESTIONS] * 8
    return write_jsonl(tmp_path / "pairs.jsonl", rows)

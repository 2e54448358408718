"""Small learnable datasets written on the fly for the trainer tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QUESTIONS = ["What is the capital of France?", "How do I bake bread?", "Please tell me a joke.",
             "What is two plus two?", "Can you help me?", "Tell me about numbers."]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


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

"""Tiny learnable datasets shared by the trainer tests."""

from __future__ import annotations

import json
from pathlib import Path

QUESTIONS = ["What is the capital of France?", "How do I bake bread?", "Please tell me a joke.",
             "What is two plus two?", "Can you help me?", "Tell me about numbers."]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path

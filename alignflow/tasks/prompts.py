"""Turning task problems into prompt rows: a question template and optional few-shot examples.

A row is ``{"prompt": [messages], "reference": "81", "question": ...}``, which
:func:`alignflow.data.read_prompts` reads as a prompt (the messages, ending with the user's
question) with its reference answer; the chat template is applied later, by the trainer. Few-shot
examples are either earlier user/assistant turns (``fewshot_style="chat"``, what an instruct
model was tuned on) or worked examples pasted above the question in one user message (``"text"``).

Templates use ``{question}`` / ``{answer}`` / ``{solution}`` placeholders filled by plain
replacement, so literal braces (``\\boxed{}``) need no escaping.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alignflow.data.types import Message


@dataclass(frozen=True)
class Problem:
    question: str  # the bare problem ("23 + 58", a GSM8K question)
    answer: str  # the exact answer, as the reference ("81")
    solution: str = ""  # worked steps shown in few-shot examples ("23 + 58 = 81")
    source: str = ""  # where it came from ("gsm8k/train.jsonl:12"), for analysis


@dataclass(frozen=True)
class PromptFormat:
    template: str = "{question}"  # the user message
    system: str = ""  # a system message; empty = none (the chat template may add its default)
    answer_template: str = "{solution}\nThe answer is {answer}."  # a few-shot example's assistant reply
    fewshot_style: Literal["chat", "text"] = "chat"

    def __post_init__(self) -> None:
        if "{question}" not in self.template:
            raise ValueError(f"the prompt template must contain {{question}}, got {self.template!r}")
        if self.fewshot_style not in ("chat", "text"):
            raise ValueError(f"fewshot_style must be chat or text, got {self.fewshot_style!r}")

    def question(self, problem: Problem) -> str:
        return self.template.replace("{question}", problem.question)

    def reply(self, problem: Problem) -> str:
        text = self.answer_template.replace("{solution}", problem.solution or problem.question)
        return text.replace("{answer}", problem.answer).replace("{question}", problem.question).strip()

    def messages(self, problem: Problem, shots: Sequence[Problem] = ()) -> list[Message]:
        """The prompt for ``problem`` after the worked examples ``shots``."""
        messages: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        if self.fewshot_style == "chat":
            for shot in shots:
                messages += [{"role": "user", "content": self.question(shot)},
                             {"role": "assistant", "content": self.reply(shot)}]
            return [*messages, {"role": "user", "content": self.question(problem)}]
        examples = "".join(f"{self.question(shot)}\n{self.reply(shot)}\n\n" for shot in shots)
        return [*messages, {"role": "user", "content": examples + self.question(problem)}]

    def row(self, problem: Problem, shots: Sequence[Problem] = (), **extra: Any) -> dict[str, Any]:
        """One JSONL row ``read_prompts`` accepts; ``extra`` fields (the op, ...) are kept for analysis."""
        row = {"prompt": self.messages(problem, shots), "reference": problem.answer, "question": problem.question}
        return {**row, **({"origin": problem.source} if problem.source else {}), **extra}


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` as JSON lines; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count

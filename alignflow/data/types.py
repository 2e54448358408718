"""The canonical example types every reader produces and every trainer consumes.

A prompt is always a list of chat messages (``{"role": ..., "content": ...}``), so that one
formatter (the tokenizer's chat template, or a plain Human/Assistant template) turns any source
into model input. ``source`` is ``"file:line"`` so that any later error can name the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class SFTExample:
    prompt: list[Message]
    response: str
    source: str = ""


@dataclass(frozen=True)
class PreferenceExample:
    prompt: list[Message]
    chosen: str
    rejected: str
    source: str = ""


@dataclass(frozen=True)
class PromptExample:
    prompt: list[Message]
    reference: str | None = None  # a gold answer (verifiable tasks) or reference text (ROUGE)
    source: str = ""


@dataclass(frozen=True)
class RowIssue:
    """One malformed row: where it is and why it was not used."""

    source: str  # "path:line"
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class ReadResult(Generic[T]):
    """Examples read from a source plus every row that was skipped and why (never silent)."""

    examples: list[T] = field(default_factory=list)
    issues: list[RowIssue] = field(default_factory=list)
    rows_read: int = 0
    duplicates: int = 0  # good rows not read because an earlier row had the same key (a post read once)

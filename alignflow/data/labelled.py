"""Labelled texts for classifiers: ``{text, label}`` rows (IMDB reviews, say).

``label`` is an index into the classifier's label names or one of those names. Rows without a
non-empty ``text`` or with an unknown label are reported with their ``file:line``, never dropped
silently, as every other reader does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from alignflow.data.sources import iter_rows
from alignflow.data.types import ReadResult, RowIssue

_BREAK = re.compile(r"(?:\s*<br\s*/?>\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: int  # index into the label names
    source: str = ""


def row_to_labelled(row: object, source: str, labels: list[str]) -> LabelledText:
    if isinstance(row, Exception):
        raise ValueError(str(row))
    if not isinstance(row, dict):
        raise ValueError(f"expected an object with text and label, got {type(row).__name__}")
    text, label = row.get("text"), row.get("label")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if isinstance(label, str) and label in labels:
        return LabelledText(text, labels.index(label), source)
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(labels):
        return LabelledText(text, label, source)
    raise ValueError(f"label {label!r} is neither an index below {len(labels)} nor one of {labels}")


def read_labelled(source: str | Path, labels: list[str], *, max_samples: int | None = None
                  ) -> ReadResult[LabelledText]:
    """Every well-formed row of ``source`` (at most ``max_samples``) and an issue per malformed one."""
    result: ReadResult[LabelledText] = ReadResult()
    for location, row in iter_rows(source):
        if max_samples is not None and len(result.examples) >= max_samples:
            break
        result.rows_read += 1
        try:
            result.examples.append(row_to_labelled(row, location, labels))
        except ValueError as err:
            result.issues.append(RowIssue(source=location, reason=str(err)))
    return result


def clean_text(text: str) -> str:
    """Scraped reviews carry HTML line breaks (``<br />``); classifiers and policies see plain text."""
    return _BREAK.sub(" ", text).strip()


def first_words(text: str, count: int) -> str:
    """The first ``count`` whitespace-separated words of ``text``."""
    return " ".join(text.split()[:count])

"""Turn any supported source into canonical ``train.jsonl`` / ``validation.jsonl`` files.

Canonical rows (what every reader reads back unchanged):
``{"prompt": [messages], "chosen": str, "rejected": str}`` for preferences,
``{"prompt": [messages], "response": str}`` for SFT and
``{"prompt": [messages], "reference": str}`` (reference optional) for prompts.
Every row that was not used goes to ``skipped.jsonl`` as ``{"source": "path:line", "reason": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alignflow.config.paths import check_output_dir
from alignflow.data.readers import Kind, RowCallback, detect_kind, read_examples
from alignflow.data.splits import train_val_split
from alignflow.data.types import PreferenceExample, PromptExample, RowIssue, SFTExample

TRAIN_FILE, VALIDATION_FILE, SKIPPED_FILE = "train.jsonl", "validation.jsonl", "skipped.jsonl"


@dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare_dataset` read and wrote."""

    source: str
    kind: Kind
    out_dir: Path
    rows_read: int
    train: int
    validation: int
    issues: list[RowIssue]

    @property
    def skipped(self) -> int:
        return len(self.issues)


def prepare_dataset(
    source: str | Path,
    out_dir: str | Path,
    *,
    kind: Kind | Literal["auto"] = "auto",
    max_samples: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    strict: bool = False,
    on_row: RowCallback | None = None,
) -> PrepareReport:
    """Read ``source`` as ``kind`` (``"auto"``: detected from its first rows), split and write it.

    ``out_dir`` is checked first (ConfigError), so a long read never ends on an unwritable folder."""
    check_output_dir("--out", out_dir)
    resolved_kind: Kind = detect_kind(source) if kind == "auto" else kind
    result = read_examples(source, resolved_kind, strict=strict, max_samples=max_samples, on_row=on_row)
    train, validation = train_val_split(result.examples, val_fraction, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / TRAIN_FILE, map(canonical_row, train))
    write_jsonl(out / VALIDATION_FILE, map(canonical_row, validation))
    write_jsonl(out / SKIPPED_FILE, ({"source": i.source, "reason": i.reason} for i in result.issues))
    return PrepareReport(
        source=str(source), kind=resolved_kind, out_dir=out, rows_read=result.rows_read,
        train=len(train), validation=len(validation), issues=result.issues,
    )


def canonical_row(example: SFTExample | PreferenceExample | PromptExample) -> dict[str, Any]:
    """The canonical JSON object of an example (its ``source`` is not written)."""
    if isinstance(example, PreferenceExample):
        return {"prompt": example.prompt, "chosen": example.chosen, "rejected": example.rejected}
    if isinstance(example, SFTExample):
        return {"prompt": example.prompt, "response": example.response}
    row: dict[str, Any] = {"prompt": example.prompt}
    if example.reference is not None:
        row["reference"] = example.reference
    return row


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")

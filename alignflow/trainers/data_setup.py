"""Read a job's dataset, split it, and report every skipped row (console + ``skipped_rows.jsonl``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from alignflow.config.schema import DataConfig
from alignflow.data.splits import train_val_split
from alignflow.data.types import ReadResult, RowIssue

T = TypeVar("T")


def load_train_val(
    data: DataConfig,
    reader: Callable[..., ReadResult[T]],
    *,
    output_dir: Path,
    console: Console,
) -> tuple[list[T], list[T]]:
    train_read = reader(data.train, strict=data.strict, max_samples=data.max_samples)
    issues = list(train_read.issues)
    if data.validation:
        val_read = reader(data.validation, strict=data.strict)
        issues += val_read.issues
        train, val = train_read.examples, val_read.examples
    else:
        train, val = train_val_split(train_read.examples, data.val_fraction, data.split_seed)
    report_issues(issues, output_dir, console)
    if not train:
        raise ValueError(f"data.train={data.train!r} gave no usable rows ({len(issues)} skipped; see above)")
    console.print(f"data: {len(train)} train / {len(val)} validation examples from {data.train}")
    return train, val


def report_issues(issues: list[RowIssue], output_dir: Path, console: Console, what: str = "rows") -> None:
    """Never drop silently: count skipped rows by reason, show the first few, save them all."""
    if not issues:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "skipped_rows.jsonl"
    with path.open("a") as fh:
        for issue in issues:
            fh.write(json.dumps({"source": issue.source, "reason": issue.reason}) + "\n")
    counts = Counter(issue.reason.split(":")[0] for issue in issues)
    console.print(f"[yellow]skipped {len(issues)} {what}[/] (all listed in {path}):")
    for reason, count in counts.most_common(8):
        console.print(f"  {count:6d}  {reason}")
    for issue in issues[:3]:
        console.print(f"  e.g. {issue}")

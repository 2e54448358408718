"""One place every trainer sends its metrics: a JSONL file, TensorBoard, and the console.

``metrics.jsonl`` is strict JSON: a metric that is NaN or infinite is written as ``null`` and
named in the row's ``non_finite`` list. A resumed run first cuts the file back to the step it
resumes from (:func:`truncate_metrics`), so steps redone after a kill are logged once.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from alignflow.runtime.state_io import fault_point


class MetricsLogger:
    """Appends ``{"step", "split", **metrics}`` rows to ``metrics.jsonl`` and mirrors them to TensorBoard."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, console: Console | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self.console = console or Console()
        self.tensorboard = tensorboard
        self.writer = None  # opened at the first row, so a run that logs nothing leaves no event file
        self.purge_step: int | None = None

    def truncate_after(self, step: int) -> int:
        """Forget every row (and TensorBoard event) after ``step``: call it when a run resumes from the
        checkpoint of ``step``, with -1 when it starts afresh. Returns how many rows were removed."""
        removed = truncate_metrics(self.path, step)
        self.close()
        self.writer = None
        self.purge_step = step + 1
        return removed

    def log(self, step: int, metrics: dict[str, Any], split: str = "train") -> None:
        values, non_finite = json_safe_metrics(metrics)
        row = {"step": step, "split": split, "time": round(time.time(), 3), **values}
        if non_finite:
            row["non_finite"] = non_finite
        with self.path.open("a") as fh:
            fh.write(json.dumps(row, allow_nan=False) + "\n")
        fault_point(f"log:{split}:{step}")
        writer = self._tensorboard()
        if writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    writer.add_scalar(f"{split}/{key}", value, step)
            writer.flush()

    def _tensorboard(self):
        if self.writer is None and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a soft dependency
                self.tensorboard = False
                return None
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.purge_step)
        return self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def json_safe_metrics(metrics: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Metrics ready for strict JSON: numbers as Python numbers, NaN / inf as ``None``; also the
    names of the non-finite ones."""
    values: dict[str, Any] = {}
    non_finite: list[str] = []
    for key, value in metrics.items():
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy / torch scalars
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            non_finite.append(key)
            value = None
        elif not isinstance(value, (str, int, float, bool, list, dict, type(None))):
            value = str(value)
        values[key] = value
    return values, non_finite


def truncate_metrics(path: str | Path, step: int) -> int:
    """Keep the rows of ``path`` up to ``step`` (and drop a last line cut short by a kill); returns
    how many rows were removed. The file is replaced atomically."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = [line for line, at in zip(lines, map(_row_step, lines)) if at is not None and at <= step]
    if len(kept) == len(lines):
        return 0
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(line + "\n" for line in kept))
    os.replace(partial, path)
    return len(lines) - len(kept)


def _row_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def format_metrics(metrics: dict[str, Any], keys: list[str] | None = None) -> str:
    """A compact ``key=value`` line for the console."""
    parts = []
    for key in keys or list(metrics):
        value = metrics.get(key)
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif value is not None:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``; a last line cut short by a kill is left out."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = [json.loads(line) for line in lines[:-1]]
    try:
        rows += [json.loads(line) for line in lines[-1:]]
    except json.JSONDecodeError:
        pass
    return rows

"""One place every trainer sends its metrics: a JSONL file, TensorBoard, and the console."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console


class MetricsLogger:
    """Appends ``{"step", "split", **metrics}`` rows to ``metrics.jsonl`` and mirrors them to TensorBoard."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, console: Console | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self.console = console or Console()
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a soft dependency
                self.writer = None

    def log(self, step: int, metrics: dict[str, Any], split: str = "train") -> None:
        row = {"step": step, "split": split, "time": round(time.time(), 3), **metrics}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row, default=float) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"{split}/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

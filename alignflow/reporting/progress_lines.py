"""Progress as plain lines for output that is not a terminal (``make demo | tee log``, CI, nohup).

Rich progress bars redraw in place, so a pipe sees nothing until a stage ends; a log wants one
greppable line every so often instead: what, how far, the headline metrics, throughput, ETA.
"""

from __future__ import annotations

from typing import Any

from alignflow.reporting.metrics_logger import format_metrics


def progress_line(label: str, done: int, total: int, elapsed_s: float, metrics: dict[str, Any] | None = None,
                  keys: list[str] | None = None, *, start: int = 0) -> str:
    """``train 40/200 (20%) loss=0.61 tokens_per_s=812 elapsed 1m20s eta 5m20s``; the ETA assumes the
    remaining steps take as long as the ``done - start`` this process did (``start``: a resume's first)."""
    parts = [f"{label} {done}/{total} ({done / max(total, 1):.0%})"]
    if metrics:
        parts.append(format_metrics(metrics, [k for k in keys or list(metrics) if k in metrics]))
    parts.append(f"elapsed {duration(elapsed_s)}")
    if start < done < total:
        parts.append(f"eta {duration(elapsed_s / (done - start) * (total - done))}")
    return " ".join(p for p in parts if p)


def duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

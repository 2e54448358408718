"""``rlhf_training_curves.png``: reward, KL, entropy and response length against step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (panel title, train metric keys, eval metric key or None)
PANELS = [
    ("reward", ["reward/raw_mean", "reward/total_mean"], "reward_mean"),
    ("KL to reference (nats / response)", ["kl/ref"], "kl"),
    ("entropy (nats / token)", ["policy/entropy"], None),
    ("response length (tokens)", ["response/length_mean"], "length_mean"),
]
LABELS = {"reward/raw_mean": "score (train)", "reward/total_mean": "score - KL penalty (train)"}


def latest_rows(rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """One row per step of ``split`` (the last one written, so a resumed run's rewrites win), by step."""
    by_step = {row["step"]: row for row in rows if row.get("split") == split}
    return [by_step[s] for s in sorted(by_step)]


def _series(rows: list[dict[str, Any]], split: str, key: str | None) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in latest_rows(rows, split) if key and isinstance(r.get(key), (int, float))]


def _draw(runs: dict[str, list[dict[str, Any]]], out_path: str | Path, title: str) -> Path:
    """The four panels; one colour per run. A single run also shows its second train metric."""
    from matplotlib.figure import Figure  # a Figure without pyplot: no global state, no GUI backend

    fig = Figure(figsize=(11, 7), layout="constrained")
    single = len(runs) == 1
    for ax, (name, keys, eval_key) in zip(fig.subplots(2, 2).flat, PANELS):
        for i, (run, rows) in enumerate(runs.items()):
            color = None if single else f"C{i % 10}"  # one colour per run; a single run's lines vary
            for key in keys if single else keys[:1]:
                points = _series(rows, "train", key)
                if points:
                    ax.plot(*zip(*points), color=color, label=LABELS.get(key, "train") if single else f"{run} (train)")
            points = _series(rows, "eval", eval_key)
            if points:
                ax.plot(*zip(*points), "o--", color=color, label="held-out eval" if single else f"{run} (held-out)")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8 if single else 7)
    if title:
        fig.suptitle(title)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    return out_path


def plot_rlhf_curves(rows: list[dict[str, Any]], out_path: str | Path, title: str = "") -> Path:
    """Draw the four panels from one run's metrics rows (``MetricsLogger`` JSONL) into ``out_path``."""
    return _draw({"run": rows}, out_path, title)


def plot_run_comparison(runs: dict[str, list[dict[str, Any]]], out_path: str | Path, title: str = "") -> Path:
    """Several runs' curves on the same four panels (e.g. GRPO vs RLOO vs REINFORCE++ on one task):
    each run's first train metric of a panel as a line, its held-out evaluations as markers."""
    return _draw(runs, out_path, title)

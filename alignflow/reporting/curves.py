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


def plot_rlhf_curves(rows: list[dict[str, Any]], out_path: str | Path, title: str = "") -> Path:
    """Draw the four panels from metrics rows (``MetricsLogger`` JSONL) into ``out_path``."""
    from matplotlib.figure import Figure  # a Figure without pyplot: no global state, no GUI backend

    train, evals = latest_rows(rows, "train"), latest_rows(rows, "eval")
    fig = Figure(figsize=(11, 7), layout="constrained")
    for ax, (name, keys, eval_key) in zip(fig.subplots(2, 2).flat, PANELS):
        for key in keys:
            points = [(r["step"], r[key]) for r in train if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), label=LABELS.get(key, "train"))
        if eval_key:
            points = [(r["step"], r[eval_key]) for r in evals if isinstance(r.get(eval_key), (int, float))]
            if points:
                ax.plot(*zip(*points), "o--", label="held-out eval")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    return out_path


def plot_run_comparison(runs: dict[str, list[dict[str, Any]]], out_path: str | Path, title: str = "") -> Path:
    """Several runs' curves on the same four panels (e.g. GRPO vs RLOO vs REINFORCE++ on one task):
    each run's first train metric of a panel as a line, its held-out evaluations as markers."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7), layout="constrained")
    colours = [f"C{i}" for i in range(10)]
    for ax, (name, keys, eval_key) in zip(fig.subplots(2, 2).flat, PANELS):
        for (run, rows), colour in zip(runs.items(), colours * len(runs)):
            points = [(r["step"], r[keys[0]]) for r in latest_rows(rows, "train")
                      if isinstance(r.get(keys[0]), (int, float))]
            if points:
                ax.plot(*zip(*points), color=colour, alpha=0.6, label=f"{run} (train)")
            evals = [(r["step"], r[eval_key]) for r in latest_rows(rows, "eval")
                     if eval_key and isinstance(r.get(eval_key), (int, float))]
            if evals:
                ax.plot(*zip(*evals), "o--", color=colour, label=f"{run} (held-out)")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    return out_path

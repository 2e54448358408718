"""The ``alignflow rm eval`` plots as PNG bytes: a reliability diagram and chosen/rejected reward histograms."""

from __future__ import annotations

from typing import Any

import numpy as np

from alignflow.reporting.eval_plots import fit_title, new_figure, png_bytes


def reliability_diagram(calibration: dict[str, Any]) -> bytes:
    """Accuracy per confidence bin (bars, labelled with their pairs) against the bin's mean confidence
    (black ticks, on the diagonal): a gap between bar top and tick is miscalibration."""
    fig = new_figure((5.5, 5.0))
    ax = fig.subplots()
    bins = [b for b in calibration["bins"] if b["count"]]
    ax.plot([0.5, 1.0], [0.5, 1.0], color="grey", linestyle="--", label="perfect calibration")
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    ax.bar(centres, [b["accuracy"] for b in bins], width=[0.9 * (b["high"] - b["low"]) for b in bins],
           color="#1f77b4", alpha=0.7, label="accuracy per bin")
    ax.scatter([b["confidence"] for b in bins], [b["confidence"] for b in bins], marker="_", s=120, color="black",
               label="mean confidence per bin")
    for x, b in zip(centres, bins):
        ax.annotate(str(b["count"]), (x, b["accuracy"]), ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("confidence max(p, 1 - p), p = sigmoid(r_chosen - r_rejected)")
    ax.set_ylabel("share of pairs predicted right")
    fit_title(ax, f"Bradley-Terry calibration (ECE {calibration['ece']:.3f}; labels: pairs per bin)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return png_bytes(fig)


def reward_histograms(chosen: list[float], rejected: list[float]) -> bytes:
    fig = new_figure((6.0, 4.0))
    ax = fig.subplots()
    edges = np.histogram_bin_edges(np.concatenate([chosen, rejected]), bins=30)
    ax.hist(chosen, bins=edges, alpha=0.55, color="#2ca02c", label=f"chosen (mean {np.mean(chosen):.3f})")
    ax.hist(rejected, bins=edges, alpha=0.55, color="#d62728", label=f"rejected (mean {np.mean(rejected):.3f})")
    ax.set_xlabel("reward")
    ax.set_ylabel("responses")
    fit_title(ax, "rewards of chosen and rejected responses")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return png_bytes(fig)

"""Evaluation helpers shared by the preference trainers (reward model, DPO)."""

from __future__ import annotations

from pathlib import Path

import torch


def source_name(location: str) -> str:
    """``.../helpful-base.jsonl.gz:12`` -> ``helpful-base``: the file a row came from."""
    name = Path(location.rsplit(":", 1)[0]).name
    return name.split(".", 1)[0] or name


def accuracy_by_source(sources: list[str], chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """Accuracy per source file when validation mixes several (an average can hide a subset below chance).

    Ties count as half right, as in ``preference_metrics``: DPO's implicit rewards are exactly
    tied before the first update, and a tie is a coin flip, not a loss.
    """
    names = sorted(set(sources))
    if len(names) < 2:
        return {}
    diff = (chosen - rejected).float()
    correct = (diff > 0).float() + 0.5 * (diff == 0).float()
    index = torch.tensor([names.index(s) for s in sources])
    return {f"accuracy/{name}": float(correct[index == i].mean()) for i, name in enumerate(names)}

"""Is the proxy, is the judge, worth believing? Each scorer's held-out pair accuracy beside the length rule.

From ``judge_eval_pairs:`` when the eval config names preference pairs (every scorer measured on
the same pairs, lengths in word tokens), else from the numbers saved with a reward model by
``rm train`` (its validation accuracy and ``length_baseline/accuracy``), else "not measured".
Any scorer kind works: only ``score(prompts, responses)`` and, for saved numbers, a folder with
``alignflow.json`` metrics are needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from alignflow.evaluation.generate import Scorer
from alignflow.evaluation.pair_quality import (
    Bootstrap,
    is_weak,
    labelled_quality,
    pair_quality,
    saved_pair_quality,
    verdict,
)

ROLE_NAMES = {"proxy": "proxy reward model", "judge": "judge"}


def measure_scorers(scorers: dict[str, tuple[str, Scorer]], *, eval_pairs: str = "", boot: Bootstrap = Bootstrap(),
                    output_dir: Path, console: Console) -> dict[str, dict[str, Any]]:
    """``{role: {model, measured_on, quality, weak, verdict}}`` for ``{role: (model path, scorer)}``."""
    examples = _read_pairs(eval_pairs, output_dir, console) if eval_pairs else None
    results = {}
    for role, (path, scorer) in scorers.items():
        if examples is not None:
            from alignflow.evaluation.pair_scoring import score_pairs

            console.print(f"measuring the {ROLE_NAMES.get(role, role)} on {len(examples)} pairs of {eval_pairs}")
            quality, where = pair_quality(score_pairs(scorer, examples), boot), f"judge_eval_pairs ({eval_pairs})"
        else:
            quality = _saved_quality(path, boot.level)
            where = ("its held-out labelled texts (saved by its trainer)" if quality and quality.get("kind") == "labels"
                     else "its own validation pairs (saved by rm train)")
        results[role] = judge_entry(role, path, quality, where if quality else None)
    return results


def judge_entry(role: str, model: str, quality: dict[str, Any] | None, measured_on: str | None) -> dict[str, Any]:
    return {"model": model, "measured_on": measured_on, "quality": quality,
            "weak": is_weak(quality) if quality else None, "verdict": verdict(ROLE_NAMES.get(role, role), quality)}


def _saved_quality(path: str, level: float) -> dict[str, Any] | None:
    from alignflow.models import read_metadata

    if not path or not Path(path).is_dir():
        return None
    text_model = Path(path) / "text_classifier.json"  # a TF-IDF judge keeps its metrics in its one file
    metrics = (json.loads(text_model.read_text()) if text_model.is_file() else read_metadata(path)).get("metrics", {})
    if (labels := labelled_quality(metrics)) is not None:
        return labels
    if "val_pairs" not in metrics:  # best/ keeps the eval metrics only; the run's final model/ has the count
        final = read_metadata(Path(path).parent / "model").get("metrics", {})
        metrics = {**metrics, "val_pairs": final.get("val_pairs")}
    return saved_pair_quality(metrics, level)


def _read_pairs(source: str, output_dir: Path, console: Console):
    from alignflow.data.readers import read_preferences
    from alignflow.trainers.data_setup import report_issues

    read = read_preferences(source)
    report_issues(read.issues, output_dir, console, what="judge_eval_pairs rows")
    if not read.examples:
        raise ValueError(f"judge_eval_pairs: {source} holds no usable preference pairs")
    return read.examples

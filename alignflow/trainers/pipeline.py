"""``alignflow run``: the stages of a :class:`RunConfig` in order, resumable stage by stage.

Each stage writes into its own folder and, when it finishes, a ``stage_done.json`` recording its
output (the model folder later stages use), metrics, wall time and a fingerprint of its resolved
config. A stage with that file is not redone; an interrupted stage is simply started again and its
trainer continues from its newest checkpoint (every job config has ``resume: true``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from alignflow.config.loader import dump_config, to_dict
from alignflow.config.run import STAGE_KINDS, RunConfig, resolve_references

STAGE_DONE = "stage_done.json"
StageDir = Callable[[str, str], Path]  # (stage, fingerprint) -> folder


def fingerprint(section: Any) -> str:
    """A short hash of a stage's resolved config, its output folder left out."""
    data = {k: v for k, v in to_dict(section).items() if k != "output_dir"}
    return hashlib.sha1(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()[:10]


def run_stage(kind: str, section: Any, console: Console) -> tuple[Path, dict[str, Any]]:
    """Run one job; returns the folder later stages refer to and the job's metrics."""
    if kind == "sft":
        from alignflow.trainers.sft import train_sft

        result = train_sft(section, console=console)
        return result.model_dir, result.metrics
    if kind == "rm":
        from alignflow.trainers.reward import train_reward_model

        result = train_reward_model(section, console=console)
        return result.best_dir or result.model_dir, result.metrics  # RL optimises the best checkpoint
    if kind == "dpo":
        from alignflow.trainers.dpo import train_dpo

        result = train_dpo(section, console=console)
        return result.model_dir, result.metrics
    if kind == "rl":
        from alignflow.trainers.rl_controller import train_rl

        result = train_rl(section, console=console)
        return result.model_dir, {**result.metrics, **{f"eval/{k}": v for k, v in result.eval_metrics.items()}}
    if kind == "eval":
        from alignflow.evaluation.runner import run_evaluation

        result = run_evaluation(section, console=console)
        return Path(section.output_dir), result.headline()
    if kind == "imdb":
        from alignflow.tasks.imdb import prepare_imdb

        return Path(section.output_dir), prepare_imdb(section)
    if kind == "classifier":
        from alignflow.trainers.classifier import train_classifier

        return train_classifier(section, console=console)
    if kind == "judge_clf":
        from alignflow.trainers.text_classifier import train_text_classifier

        return train_text_classifier(section, console=console)
    raise ValueError(f"unknown stage kind {kind!r}")


def run_pipeline(cfg: RunConfig, console: Console | None = None, *, stage_dir: StageDir | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Run ``cfg.stages`` in order; returns each stage's record (output, metrics, wall time)."""
    console = console or Console()
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "run_config.yaml")
    stage_dir = stage_dir or (lambda stage, _fp: run_dir / stage)
    outputs: dict[str, str] = {}
    folders: dict[str, str] = {}
    records: dict[str, dict[str, Any]] = {}
    for stage in cfg.stages:
        section = resolve_references(cfg.section(stage), outputs, folders)
        fp = fingerprint(section)
        folder = stage_dir(stage, fp)
        section = dataclasses.replace(section, output_dir=str(folder))
        record = _finished(folder, stage, fp, console)
        if record is None:
            console.rule(f"[bold]stage {stage}[/] -> {folder}")
            started = time.time()
            output, metrics = run_stage(STAGE_KINDS[stage], section, console)
            record = {"stage": stage, "output": str(output), "fingerprint": fp,
                      "wall_s": round(time.time() - started, 1), "metrics": _plain(metrics)}
            (folder / STAGE_DONE).write_text(json.dumps(record, indent=2))
        outputs[stage], folders[stage] = record["output"], str(folder)
        records[stage] = record
    summary = {"run_dir": str(run_dir), "stages": records,
               "wall_s": round(sum(r["wall_s"] for r in records.values()), 1)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"[bold green]run done[/]: {run_dir} ({summary['wall_s'] / 60:.1f} min of stage time)")
    return records


def _finished(folder: Path, stage: str, fp: str, console: Console) -> dict[str, Any] | None:
    marker = folder / STAGE_DONE
    if not marker.is_file():
        return None
    record = json.loads(marker.read_text())
    if record.get("fingerprint") != fp:
        # Silently reusing (or overwriting) a finished stage would mix results of two configs.
        raise ValueError(f"stage {stage}: {folder} holds a finished run of a different {stage} config; "
                         f"delete that folder to redo the stage, or set another output_dir")
    console.print(f"stage {stage}: already done ({folder}), skipped")
    return record


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe metrics (paths and numpy scalars become strings / floats)."""
    return json.loads(json.dumps(metrics, default=lambda v: float(v) if hasattr(v, "__float__") else str(v)))

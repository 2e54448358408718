"""The start of every job: its run folder, the exact config recorded in it, seeds and threads.

On several ranks, rank 0 owns the run folder: it records the config, clears a previous run and
logs; the other ranks read from it and write only their optimizer shards.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from alignflow.config.distributed import DistributedConfig
from alignflow.reporting.metrics_logger import MetricsLogger
from alignflow.runtime import distributed, set_seed, set_threads
from alignflow.trainers.checkpoint import checkpoint_config, latest_checkpoint
from alignflow.trainers.resume_check import OFFLINE_RESUMABLE, MayChange, any_value, check_resumable

SUMMARY_FILE = "summary.json"
SKIPPED_ROWS_FILE = "skipped_rows.jsonl"
# What a trainer writes into its run folder; a fresh start in the folder deletes the previous run's.
RUN_OUTPUTS = ("checkpoints", "model", "best", "tensorboard", "metrics.jsonl", SUMMARY_FILE, SKIPPED_ROWS_FILE)
# An offline run may resume on another number of ranks: its checkpoints read back at any world size.
OFFLINE_RUN_RESUMABLE = {**OFFLINE_RESUMABLE,
                         **{f"distributed.{name}": any_value for name in DistributedConfig.__dataclass_fields__}}


def start_run(config, output_dir: str | Path, *, seed: int, threads: int | None) -> Path:
    """Create the run folder, record the exact config in it, and fix seeds and threads."""
    from alignflow.config.loader import dump_config

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if distributed.rank() == 0:
        dump_config(config, out / "config.yaml")
    set_seed(seed)
    set_threads(threads)
    return out


def resume_or_start_afresh(config, output_dir: str | Path, console: Console,
                           allowed: Mapping[str, MayChange] = OFFLINE_RUN_RESUMABLE,
                           model_folder: str = "model") -> Path | None:
    """Before anything is written: the checkpoint this run will resume from (its saved config checked
    against ``config``, see ``resume_check``), or None for a fresh start. ``resume: false`` in the folder
    of a previous run deletes that run's outputs first, so that no later resume picks up its checkpoints
    and no stale ``best/`` or summary passes for the new run's. ``model_folder``: where a checkpoint
    keeps the model whose ``alignflow.json`` records the run config."""
    from alignflow.config.loader import to_dict

    out = Path(output_dir)
    ckpt = latest_checkpoint(out)
    if not config.resume:
        if distributed.rank() == 0 and (deleted := clear_previous_run(out)):
            console.print(f"[yellow]resume=false: deleted the previous run's {', '.join(deleted)} in {out}[/]")
        distributed.barrier()  # no rank reads the folder while rank 0 clears it
        return None
    if ckpt is None:
        return None
    saved = checkpoint_config(ckpt, model_folder)
    if saved is None:
        console.print(f"[yellow]{ckpt} records no config; resuming it without checking the settings[/]")
        return ckpt
    changes = check_resumable(saved, to_dict(config), where=str(ckpt), allowed=allowed, force=config.force_resume)
    if changes:
        console.print(f"[yellow]force_resume: resuming {ckpt} with changed settings: "
                      f"{'; '.join(map(str, changes))}[/]")
    return ckpt


class _RankLogger(MetricsLogger):
    """The logger of a rank other than 0: it keeps the console and writes nothing."""

    def __init__(self, run_dir: Path, console: Console) -> None:
        super().__init__(run_dir, tensorboard=False, console=console)
        self.path = run_dir / ".rank-metrics-unused"  # never written, so it reads as no rows

    def truncate_after(self, step: int) -> int:
        return 0

    def log(self, step: int, metrics: dict[str, Any], split: str = "train") -> None:
        return None


def run_logger(out: Path, console: Console) -> MetricsLogger:
    """The run's metrics logger on rank 0; a silent one on the other ranks (the run logs once)."""
    return MetricsLogger(out, console=console) if distributed.rank() == 0 else _RankLogger(out, console)


def clear_previous_run(out: Path) -> list[str]:
    """Delete the outputs of the run recorded in ``out`` (none unless it holds a run's config.yaml or
    checkpoints); returns the names deleted."""
    if not ((out / "config.yaml").is_file() or latest_checkpoint(out)):
        return []
    deleted = [name for name in RUN_OUTPUTS if (out / name).exists()]
    for name in deleted:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        else:
            (out / name).unlink()
    return deleted


def finished_summary(output_dir: str | Path, already_done: bool) -> dict[str, Any] | None:
    """The recorded summary of a run that had finished before this call trained anything, else None."""
    path = Path(output_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if already_done and path.is_file() else None

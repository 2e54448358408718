"""The start of every job: its run folder, the exact config recorded in it, seeds and threads."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from alignflow.runtime import set_seed, set_threads
from alignflow.trainers.checkpoint import checkpoint_config, clear_checkpoints, latest_checkpoint
from alignflow.trainers.resume_check import OFFLINE_RESUMABLE, MayChange, check_resumable

SUMMARY_FILE = "summary.json"
SKIPPED_ROWS_FILE = "skipped_rows.jsonl"


def start_run(config, output_dir: str | Path, *, seed: int, threads: int | None) -> Path:
    """Create the run folder, record the exact config in it, and fix seeds and threads."""
    from alignflow.config.loader import dump_config

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(config, out / "config.yaml")
    set_seed(seed)
    set_threads(threads)
    return out


def resume_or_start_afresh(config, output_dir: str | Path, console: Console,
                           allowed: Mapping[str, MayChange] = OFFLINE_RESUMABLE) -> Path | None:
    """Before anything is written: the checkpoint this run will resume from (its saved config checked
    against ``config``, see ``resume_check``), or None for a fresh start. A fresh start (``resume: false``)
    deletes the previous run's checkpoints, so that no later resume picks them up, and its skipped rows."""
    from alignflow.config.loader import to_dict

    out = Path(output_dir)
    ckpt = latest_checkpoint(out)
    if not config.resume:
        if ckpt is not None:
            count = clear_checkpoints(out)
            console.print(f"[yellow]resume=false: deleted the {count} checkpoint(s) of the previous run in {out}[/]")
        (out / SKIPPED_ROWS_FILE).unlink(missing_ok=True)
        return None
    if ckpt is None:
        return None
    saved = checkpoint_config(ckpt)
    if saved is None:
        console.print(f"[yellow]{ckpt} records no config; resuming it without checking the settings[/]")
        return ckpt
    changes = check_resumable(saved, to_dict(config), where=str(ckpt), allowed=allowed, force=config.force_resume)
    if changes:
        console.print(f"[yellow]force_resume: resuming {ckpt} with changed settings: "
                      f"{'; '.join(map(str, changes))}[/]")
    return ckpt


def finished_summary(output_dir: str | Path, already_done: bool) -> dict[str, Any] | None:
    """The recorded summary of a run that had finished before this call trained anything, else None."""
    path = Path(output_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if already_done and path.is_file() else None

"""The start of every job: its run folder, the exact config recorded in it, seeds and threads."""

from __future__ import annotations

from pathlib import Path

from alignflow.runtime import set_seed, set_threads


def start_run(config, output_dir: str | Path, *, seed: int, threads: int | None) -> Path:
    """Create the run folder, record the exact config in it, and fix seeds and threads."""
    from alignflow.config.loader import dump_config

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(config, out / "config.yaml")
    set_seed(seed)
    set_threads(threads)
    return out

"""What every command shares: the CONFIG / --set arguments and turning known failures into one red line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", exists=True, dir_okay=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key: key.sub=value.")]

console = Console()


def quiet_libraries() -> None:
    from transformers.utils import logging as hf_logging

    # Through the environment too: the ranks a distributed job starts are fresh processes.
    os.environ.update(TRANSFORMERS_VERBOSITY="error", HF_HUB_DISABLE_PROGRESS_BARS="1")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(err))}")  # a path such as [/tmp/x] is not markup
    raise typer.Exit(code=2)


def known_errors() -> tuple[type[Exception], ...]:
    """The failures a user can fix (bad config, data, model, a diverged run): no traceback for these."""
    from alignflow.config import ConfigError
    from alignflow.data.sources import DataError
    from alignflow.models import ModelNotFoundError
    from alignflow.trainers.loop import TrainingError

    return (ConfigError, DataError, ModelNotFoundError, TrainingError, ValueError, FileNotFoundError)


def guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a known failure exits with code 2 and one red line instead of a traceback."""
    quiet_libraries()
    try:
        return fn()
    except known_errors() as err:
        fail(err)


def run_job(job: Callable[..., Any], config_cls: type, config: Path, overrides: list[str] | None) -> Any:
    """Load and validate ``config_cls`` from YAML + overrides, check the paths it names (output
    folder, data, models, reward functions), then run ``job(cfg, console=...)``."""
    from alignflow.config import load_config
    from alignflow.config.paths import check_job_paths

    def load_check_run() -> Any:
        cfg = load_config(config_cls, config, overrides)
        check_job_paths(cfg)
        return job(cfg, console=console)

    return guarded(load_check_run)

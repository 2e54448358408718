"""``alignflow eval CONFIG [--set key=value ...]``: compare models on held-out prompts, write a report.

Registered on the main app by ``register(app)``; kept apart so the evaluation imports load only
when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file (see configs/eval.yaml).", exists=True,
                                           dir_okay=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key: key.sub=value.")]


def run_eval(config: Path, overrides: list[str] | None = None, console: Console | None = None):
    """Load and validate the config, then evaluate; known failures exit with code 2 and one red line."""
    from transformers.utils import logging as hf_logging

    from alignflow.config import ConfigError, load_config
    from alignflow.config.eval import EvalConfig
    from alignflow.data.sources import DataError
    from alignflow.evaluation.runner import run_evaluation
    from alignflow.models import ModelNotFoundError

    console = console or Console()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        cfg = load_config(EvalConfig, config, overrides)
        return run_evaluation(cfg, console=console)
    except (ConfigError, DataError, ModelNotFoundError, ValueError, FileNotFoundError) as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from None


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""

    @app.command("eval")
    def eval_(config: ConfigArg, overrides: SetOpt = None) -> None:
        """Compare models on held-out prompts (reward, win rates, KL, probes, hacking alerts) -> report.html."""
        run_eval(config, overrides)

"""``alignflow ppo CONFIG [--set key=value ...]``: RLHF with PPO (or GRPO/RLOO by config).

Registered on the main app by ``register(app)``; kept apart so the RL imports load only when the
command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file (see configs/ppo.yaml).", exists=True,
                                           dir_okay=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key: key.sub=value.")]


def run_ppo(config: Path, overrides: list[str] | None = None, console: Console | None = None):
    """Load and validate the config, then train; known failures exit with code 2 and one red line."""
    from transformers.utils import logging as hf_logging

    from alignflow.config import ConfigError, load_config
    from alignflow.config.rl import PPOConfig
    from alignflow.data.sources import DataError
    from alignflow.models import ModelNotFoundError
    from alignflow.trainers.loop import TrainingError
    from alignflow.trainers.rl_controller import train_ppo

    console = console or Console()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        cfg = load_config(PPOConfig, config, overrides)
        return train_ppo(cfg, console=console)
    except (ConfigError, DataError, ModelNotFoundError, TrainingError, ValueError, FileNotFoundError) as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=2) from None


def register(app: typer.Typer) -> None:
    """Add the ``ppo`` command to ``app``."""

    @app.command()
    def ppo(config: ConfigArg, overrides: SetOpt = None) -> None:
        """RLHF with PPO: sample, score with a reward model or function, update actor and critic."""
        run_ppo(config, overrides)

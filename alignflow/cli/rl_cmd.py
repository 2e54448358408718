"""``alignflow ppo CONFIG [--set key=value ...]``: RLHF with PPO (or GRPO/RLOO by config).

Registered on the main app by ``register(app)``; the RL imports load only when the command runs.
"""

from __future__ import annotations

import typer

from alignflow.cli.common import ConfigArg, SetOpt, run_job


def register(app: typer.Typer) -> None:
    """Add the ``ppo`` command to ``app``."""

    @app.command()
    def ppo(config: ConfigArg, overrides: SetOpt = None) -> None:
        """RLHF with PPO: sample, score with a reward model or function, update actor and critic."""
        from alignflow.config.rl import PPOConfig
        from alignflow.trainers.rl_controller import train_ppo

        run_job(train_ppo, PPOConfig, config, overrides)

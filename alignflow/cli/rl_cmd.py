"""``alignflow rl CONFIG [--set key=value ...]``: RLHF with PPO, GRPO, RLOO or REINFORCE++.

The estimator (``algorithm.adv_estimator``) decides the algorithm; ``alignflow ppo`` and
``alignflow grpo`` are the same job with the estimator set first (a ``--set`` still wins).
Registered on the main app by ``register(app)``; the RL imports load only when the command runs.
"""

from __future__ import annotations

import typer

from alignflow.cli.common import ConfigArg, SetOpt, run_job

# Command -> the estimator it sets (None: the config's own).
RL_COMMANDS = {"rl": None, "ppo": "gae", "grpo": "grpo"}


def run_rl(config, overrides: list[str] | None, estimator: str | None) -> None:
    from alignflow.config.rl import RLConfig
    from alignflow.trainers.rl_controller import train_rl

    preset = [f"algorithm.adv_estimator={estimator}"] if estimator else []
    run_job(train_rl, RLConfig, config, preset + list(overrides or []))


def register(app: typer.Typer) -> None:
    """Add ``rl`` and its aliases ``ppo`` (GAE with a critic) and ``grpo`` to ``app``."""

    @app.command()
    def rl(config: ConfigArg, overrides: SetOpt = None) -> None:
        """RLHF: sample, score with a reward model or function, update the policy (and critic).
        The algorithm is algorithm.adv_estimator: gae (PPO), grpo, rloo, reinforce_pp, ..."""
        run_rl(config, overrides, RL_COMMANDS["rl"])

    @app.command()
    def ppo(config: ConfigArg, overrides: SetOpt = None) -> None:
        """`alignflow rl` with algorithm.adv_estimator=gae (PPO with a critic)."""
        run_rl(config, overrides, RL_COMMANDS["ppo"])

    @app.command()
    def grpo(config: ConfigArg, overrides: SetOpt = None) -> None:
        """`alignflow rl` with algorithm.adv_estimator=grpo (group-relative advantages, no critic)."""
        run_rl(config, overrides, RL_COMMANDS["grpo"])

"""``alignflow eval CONFIG [--set key=value ...]``: compare models on held-out prompts, write a report.

Registered on the main app by ``register(app)``; the evaluation imports load only when the command runs.
"""

from __future__ import annotations

import typer

from alignflow.cli.common import ConfigArg, SetOpt, run_job


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""

    @app.command("eval")
    def eval_(config: ConfigArg, overrides: SetOpt = None) -> None:
        """Compare models on held-out prompts (reward, win rates, KL, probes, hacking alerts) -> report.html."""
        from alignflow.config.eval import EvalConfig
        from alignflow.evaluation.runner import run_evaluation

        run_job(run_evaluation, EvalConfig, config, overrides)

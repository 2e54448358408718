"""``alignflow run`` (the pipeline) and ``alignflow sweep`` (a grid of pipelines, one comparison)."""

from __future__ import annotations

from typing import Annotated

import typer

from alignflow.cli.common import ConfigArg, SetOpt, console, guarded, run_job

GridOpt = Annotated[list[str], typer.Option("--grid", "-g", help="key=v1,v2,...: values to try for one config key.")]


def register(app: typer.Typer) -> None:
    @app.command()
    def run(config: ConfigArg, overrides: SetOpt = None) -> None:
        """Run a pipeline (SFT -> reward model -> PPO / GRPO / DPO -> eval) into one run folder; resumable."""
        from alignflow.config.run import RunConfig
        from alignflow.trainers.pipeline import run_pipeline

        run_job(run_pipeline, RunConfig, config, overrides)

    @app.command()
    def sweep(config: ConfigArg, grid: GridOpt, overrides: SetOpt = None) -> None:
        """Run a pipeline config over a grid of values and write one comparison report."""
        from alignflow.trainers.sweep import run_sweep

        guarded(lambda: run_sweep(config, grid, overrides, console=console))

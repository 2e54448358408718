"""Optional experiment trackers (Weights & Biases, MLflow) for evaluation scalars.

Neither package is a dependency: a tracker switched on in the config logs only when its package
imports, and otherwise prints one note and carries on (an evaluation should never fail for want
of a dashboard).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from rich.console import Console

from alignflow.config.eval import MlflowConfig, WandbConfig


def log_to_trackers(scalars: dict[str, float], config: dict[str, Any], out: Path, wandb_cfg: WandbConfig,
                    mlflow_cfg: MlflowConfig, console: Console, artifacts: tuple[Path, ...] = ()) -> list[str]:
    """Log ``scalars`` to each enabled tracker; returns the names of the trackers that logged."""
    logged = []
    if wandb_cfg.enabled and (wandb := _import("wandb", console)) is not None:
        run = wandb.init(project=wandb_cfg.project, name=wandb_cfg.name or out.name, config=config, dir=str(out),
                         job_type="eval")
        try:
            run.log(scalars)
            run.summary.update(scalars)
        finally:
            run.finish()
        logged.append("wandb")
    if mlflow_cfg.enabled and (mlflow := _import("mlflow", console)) is not None:
        if mlflow_cfg.tracking_uri:
            mlflow.set_tracking_uri(mlflow_cfg.tracking_uri)
        mlflow.set_experiment(mlflow_cfg.experiment)
        with mlflow.start_run(run_name=mlflow_cfg.name or out.name):
            mlflow.log_metrics({mlflow_key(k): v for k, v in scalars.items()})
            for path in artifacts:
                if path.is_file():
                    mlflow.log_artifact(str(path))
        logged.append("mlflow")
    return logged


def mlflow_key(key: str) -> str:
    """MLflow accepts letters, digits, ``_ - . /`` and spaces in metric names; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)


def _import(name: str, console: Console) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        console.print(f"[yellow]note:[/] {name} is enabled in the config but not installed; skipping it "
                      f"(pip install {name})")
        return None

"""``alignflow sweep CONFIG --grid key=v1,v2 ...``: one pipeline run per grid point, one comparison.

Stages whose resolved config is the same at every grid point run once: stage folders are named by
the fingerprint of their config (``<sweep>/stages/<stage>-<hash>``), so a grid over the PPO KL
coefficient trains the SFT policy and the reward model once and PPO + eval once per value.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from alignflow.config.loader import ConfigError, load_config, parse_override
from alignflow.config.run import RunConfig
from alignflow.reporting.report import CSS, esc
from alignflow.trainers.pipeline import run_pipeline


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["ppo.train.actor_lr=1e-5,3e-5"]`` -> ``[("ppo.train.actor_lr", ["1e-5", "3e-5"])]``."""
    axes = []
    for item in items:
        key, _ = parse_override(item)
        values = [v.strip() for v in item.split("=", 1)[1].split(",") if v.strip()]
        if not values:
            raise ConfigError(f"--grid {item!r}: give at least one value after '='")
        axes.append((key, values))
    return axes


def grid_points(axes: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    keys = [key for key, _ in axes]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(values for _, values in axes))]


def point_name(point: dict[str, str]) -> str:
    """A folder name for a grid point: ``kl_coef=0.05,actor_lr=1e-5`` (last key part only)."""
    text = ",".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in point.items())
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def flatten_metrics(records: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{stage: {metrics: {k: v}}}`` -> ``{"stage/k": v}`` for the numeric values."""
    flat = {}
    for stage, record in records.items():
        for key, value in record.get("metrics", {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{stage}/{key}"] = value
    return flat


def run_sweep(config: str | Path, grid: list[str], overrides: list[str] | None = None,
              console: Console | None = None) -> list[dict[str, Any]]:
    console = console or Console()
    axes = parse_grid(grid)
    base = load_config(RunConfig, config, overrides)
    sweep_dir = Path(base.output_dir)
    points = grid_points(axes)
    # Validate every point before running any (a bad value fails now, not after an hour).
    configs = []
    for point in points:
        sets = list(overrides or []) + [f"{k}={v}" for k, v in point.items()]
        sets.append(f"output_dir={sweep_dir / point_name(point)}")
        configs.append(load_config(RunConfig, config, sets))
    console.print(f"sweep: {len(points)} runs over {', '.join(k for k, _ in axes)} -> {sweep_dir}")

    rows = []
    for point, cfg in zip(points, configs):
        console.rule(f"[bold]sweep point {point_name(point)}")
        records = run_pipeline(cfg, console,
                               stage_dir=lambda stage, fp: sweep_dir / "stages" / f"{stage}-{fp}")
        rows.append({"point": point, "run_dir": cfg.output_dir, "metrics": flatten_metrics(records)})
        write_sweep_report(sweep_dir, rows, console=None)  # keep the comparison current as runs finish
    write_sweep_report(sweep_dir, rows, console=console)
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Metrics that differ between runs come first: they are what the sweep is about."""
    keys = sorted({k for row in rows for k in row["metrics"]})
    varying = [k for k in keys if len({row["metrics"].get(k) for row in rows}) > 1]
    return varying or keys


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


def write_sweep_report(sweep_dir: Path, rows: list[dict[str, Any]], console: Console | None) -> Path:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(json.dumps(rows, indent=2))
    params = list(rows[0]["point"]) if rows else []
    columns = _columns(rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in params + columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(_cell(row['point'][p]))}</td>" for p in params)
        + "".join(f"<td>{esc(_cell(row['metrics'].get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>alignflow sweep</title>"
            f"<style>{CSS}</style></head><body><h1>Sweep: {esc(sweep_dir)}</h1><p>{len(rows)} runs; metrics "
            f"that differ between runs are shown.</p><table><tr>{head}</tr>{body}</table></body></html>")
    path = sweep_dir / "sweep_report.html"
    path.write_text(page)
    if console is not None:
        table = Table(title=f"sweep {sweep_dir}")
        for name in params + columns[:8]:
            table.add_column(name.rsplit(".", 1)[-1] if name in params else name)
        for row in rows:
            table.add_row(*[_cell(row["point"][p]) for p in params],
                          *[_cell(row["metrics"].get(c)) for c in columns[:8]])
        console.print(table)
        console.print(f"comparison: {path}")
    return path

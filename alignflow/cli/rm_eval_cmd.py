"""``alignflow rm eval MODEL DATA``: how well a reward model (or a DPO policy's implicit reward) ranks
held-out preference pairs, beside "the longer response wins" on the same pairs.

Writes ``metrics.json``, ``reliability.png`` and ``reward_histograms.png`` to ``--out`` (default
``<MODEL>/rm_eval`` beside the model) and prints a table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from alignflow.cli.common import console, guarded


def register(rm_app: typer.Typer) -> None:
    """Add ``eval`` to the ``rm`` command group."""

    @rm_app.command("eval")
    def rm_eval(
        model: Annotated[str, typer.Argument(
            help="A reward-model folder (`rm train`), or with --reference a DPO policy.")],
        data: Annotated[str, typer.Argument(help="Preference pairs in any format `rm train` reads (file or folder).")],
        reference: Annotated[Optional[str], typer.Option(
            help="The DPO reference policy: MODEL is then scored by beta * (log pi - log pi_ref).")] = None,
        beta: Annotated[float, typer.Option(help="DPO beta of the implicit reward (with --reference).")] = 0.1,
        out: Annotated[Optional[Path], typer.Option(help="Folder for metrics.json and the plots.")] = None,
        max_pairs: Annotated[Optional[int], typer.Option(help="Read at most this many good pairs.")] = None,
        batch_size: Annotated[int, typer.Option(help="Pairs a forward pass.")] = 8,
        dtype: str = "bf16",
        bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples of the pairs.")] = 1000,
        seed: int = 0,
        strict: Annotated[bool, typer.Option(help="Fail on the first malformed row.")] = False,
    ) -> None:
        """Accuracy per source file with bootstrap intervals, the length rule, length correlation, calibration."""
        guarded(lambda: evaluate_pairs(model, data, reference=reference, beta=beta, out=out, max_pairs=max_pairs,
                                       batch_size=batch_size, dtype=dtype, bootstrap=bootstrap, seed=seed,
                                       strict=strict))


def evaluate_pairs(model: str, data: str, *, reference: str | None = None, beta: float = 0.1,
                   out: Path | None = None, max_pairs: int | None = None, batch_size: int = 8, dtype: str = "bf16",
                   bootstrap: int = 1000, seed: int = 0, strict: bool = False) -> dict[str, Any]:
    from alignflow.data.readers import read_preferences
    from alignflow.evaluation.pair_quality import Bootstrap, pair_quality
    from alignflow.evaluation.pair_scoring import implicit_reward_pairs, reward_model_pairs
    from alignflow.reporting.pair_plots import reliability_diagram, reward_histograms
    from alignflow.trainers.data_setup import report_issues

    if beta <= 0:
        raise ValueError(f"--beta must be positive, got {beta}")
    if dtype not in ("bf16", "fp32"):
        raise ValueError(f"--dtype must be bf16 or fp32, got {dtype!r}")
    out = out or Path(model) / "rm_eval"
    read = read_preferences(data, strict=strict, max_samples=max_pairs)
    report_issues(read.issues, out, console)
    if not read.examples:
        raise ValueError(f"{data}: no usable preference pairs")
    console.print(f"scoring {len(read.examples)} pairs from {data} with {model}"
                  + (f" against the reference {reference} (beta={beta})" if reference else ""))
    if reference:
        scores = implicit_reward_pairs(model, reference, read.examples, beta=beta, batch_size=batch_size, dtype=dtype)
    else:
        scores = reward_model_pairs(model, read.examples, batch_size=batch_size, dtype=dtype)
    quality = pair_quality(scores, Bootstrap(n=bootstrap, seed=seed))
    metrics = {"model": model, "data": data, "reward": "dpo_implicit" if reference else "reward_model",
               "reference": reference, "beta": beta if reference else None, "skipped_rows": len(read.issues),
               "length_unit": "tokens of MODEL's tokenizer", **quality}
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.png").write_bytes(reliability_diagram(quality["calibration"]))
    (out / "reward_histograms.png").write_bytes(reward_histograms(scores.chosen.tolist(), scores.rejected.tolist()))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print_table(metrics)
    console.print(f"-> {out}/metrics.json, reliability.png, reward_histograms.png")
    return metrics


def print_table(metrics: dict[str, Any]) -> None:
    table = Table(title=f"rm eval: {escape(metrics['model'])}", box=box.SIMPLE, caption="[95% bootstrap CI]")
    table.add_column("source")
    for column in ("pairs", "accuracy", "longer wins", "difference"):
        table.add_column(column, justify="right", no_wrap=True)
    rows = [("all", metrics), *metrics["by_source"].items()]
    for name, row in rows:
        acc, rule = row["accuracy"], row["length_rule"]
        table.add_row(escape(name), str(row["pairs"]), _pct(acc), _pct(rule), f"{acc['value'] - rule['value']:+.1%}")
    console.print(table)
    console.print(f"length correlation {metrics['length_correlation']:+.2f} · calibration error (ECE, 10 bins) "
                  f"{metrics['calibration']['ece']:.3f} · mean margin {metrics['mean_margin']:+.3f}"
                  + (f" · skipped rows {metrics['skipped_rows']}" if metrics["skipped_rows"] else ""))


def _pct(e: dict[str, Any]) -> str:
    return f"{e['value']:.1%} [{100 * e['low']:.1f}, {100 * e['high']:.1f}]"

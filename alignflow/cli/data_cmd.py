"""``alignflow data prepare`` and ``alignflow data explore``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from alignflow.data.explore import explore, group_issues, render_explore
from alignflow.data.prepare import SKIPPED_FILE, TRAIN_FILE, VALIDATION_FILE, prepare_dataset
from alignflow.data.readers import RowCallback
from alignflow.data.sources import DataError, RawRow

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

data_app = typer.Typer(
    help="Prepare and explore datasets: JSONL/JSON/CSV files (optionally .gz), folders, hub names.",
    no_args_is_help=True,
)


class KindChoice(StrEnum):
    auto = "auto"
    sft = "sft"
    preference = "preference"
    prompt = "prompt"


KindOption = Annotated[KindChoice, typer.Option(help="Example kind; auto detects it from the first rows.")]


@data_app.command("prepare")
def prepare_command(
    source: Annotated[str, typer.Argument(help="File, folder or hub dataset name (NAME[:SPLIT]).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for train/validation/skipped .jsonl.")],
    kind: KindOption = KindChoice.auto,
    max_samples: Annotated[int | None, typer.Option(min=1, help="Stop after this many good examples.")] = None,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.99, help="Share of examples for validation.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the train/validation split.")] = 0,
    strict: Annotated[bool, typer.Option(help="Stop at the first malformed row.")] = False,
) -> None:
    """Convert a dataset to canonical train/validation JSONL, listing every skipped row."""
    console = Console()
    try:
        with _reading_progress(console, source) as on_row:
            report = prepare_dataset(
                source, out, kind=kind.value, max_samples=max_samples, val_fraction=val_fraction,
                seed=seed, strict=strict, on_row=on_row,
            )
    except DataError as err:
        _fail(str(err))
    summary = Table(title=f"[bold]{escape(source)}[/] as {report.kind}", show_header=False)
    summary.add_row("rows read", str(report.rows_read))
    summary.add_row(escape(str(report.out_dir / TRAIN_FILE)), str(report.train))
    summary.add_row(escape(str(report.out_dir / VALIDATION_FILE)), str(report.validation))
    summary.add_row(escape(str(report.out_dir / SKIPPED_FILE)), str(report.skipped))
    console.print(summary)
    for group in group_issues(report.issues):
        console.print(f"  skipped {group.count} × {escape(group.reason)}  (first: {escape(group.first_locations[0])})")


@data_app.command("explore")
def explore_command(
    path: Annotated[str, typer.Argument(help="File, folder or hub dataset name (NAME[:SPLIT]).")],
    tokenizer: Annotated[
        str | None, typer.Option(help="Measure lengths in this tokenizer's tokens (alias, folder or hub id).")
    ] = None,
    kind: KindOption = KindChoice.auto,
    samples: Annotated[int, typer.Option(min=0, help="Number of example rows to show.")] = 3,
) -> None:
    """Show sizes, fields, turns, length percentiles, malformed rows and a few samples."""
    console = Console()
    loaded = _load_tokenizer(tokenizer) if tokenizer else None
    try:
        with _reading_progress(console, path) as on_row:
            report = explore(path, loaded, kind=kind.value, samples=samples, on_row=on_row)
    except DataError as err:
        _fail(str(err))
    render_explore(report, console)


def _load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    from alignflow.models import load_tokenizer  # imported here: it pulls in torch and transformers

    try:
        return load_tokenizer(name_or_path)
    except (OSError, ValueError) as err:
        _fail(f"cannot load tokenizer {name_or_path!r}: {err}")


@contextmanager
def _reading_progress(console: Console, source: str) -> Iterator[RowCallback]:
    """A spinner with a live row count (the total is unknown until the source is read)."""
    columns = (
        SpinnerColumn(), TextColumn("reading {task.description}"), BarColumn(),
        TextColumn("{task.completed:,.0f} rows"), TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(escape(source), total=None)

        def on_row(location: str, row: RawRow) -> None:
            progress.advance(task)

        yield on_row


def _fail(message: str) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=1)

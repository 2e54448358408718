"""``alignflow data prepare`` / ``explore``, and the task writers ``data arithmetic`` / ``data gsm8k``."""

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

from alignflow.config.loader import ConfigError
from alignflow.data.explore import explore, group_issues, render_explore
from alignflow.data.prepare import SKIPPED_FILE, TRAIN_FILE, VALIDATION_FILE, prepare_dataset
from alignflow.data.readers import RowCallback
from alignflow.data.sources import DataError, RawRow
from alignflow.tasks.prompts import PromptFormat

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
    except (DataError, ConfigError) as err:
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


class FewshotStyle(StrEnum):
    chat = "chat"
    text = "text"


TemplateOpt = Annotated[str | None, typer.Option(
    help="The user message; {question} is replaced by the problem (a literal \\n is a newline, in every template).")]
SystemOpt = Annotated[str, typer.Option(help="A system message (empty: none).")]
FewshotOpt = Annotated[int, typer.Option(min=0, help="Worked examples before each question (kept out of both splits).")]
FewshotStyleOpt = Annotated[FewshotStyle, typer.Option(
    help="chat: examples as earlier user/assistant turns; text: pasted above the question.")]
AnswerTemplateOpt = Annotated[str, typer.Option(
    help="A worked example's reply; {solution}, {answer} and {question} are replaced.")]


@data_app.command("arithmetic")
def arithmetic_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for train.jsonl, test.jsonl, task.json.")],
    train: Annotated[int, typer.Option(min=0, help="Training problems.")] = 2000,
    test: Annotated[int, typer.Option(min=0, help="Held-out test problems (none also in train).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the problem stream (the test set depends only on it, "
                                           "--ops and --test).")] = 0,
    ops: Annotated[str, typer.Option(help="Operations and operand digits: OP:DIGITS or OP:MIN-MAX, OP in add, "
                                          "sub, mul, div; repeat an entry to weight it.")] = "add:1-2,sub:1-2,mul:1",
    template: TemplateOpt = None,
    system: SystemOpt = "",
    fewshot: FewshotOpt = 0,
    fewshot_style: FewshotStyleOpt = FewshotStyle.chat,
    answer_template: AnswerTemplateOpt = PromptFormat.answer_template,
) -> None:
    """Write seeded arithmetic problems as prompt files; score with alignflow.tasks.arithmetic:exact_match."""
    from alignflow.tasks.arithmetic import DEFAULT_TEMPLATE, write_arithmetic

    fmt = _prompt_format(template or DEFAULT_TEMPLATE, system, answer_template, fewshot_style)
    try:
        counts = write_arithmetic(out, train=train, test=test, ops=ops, seed=seed, fewshot=fewshot, fmt=fmt)
    except ValueError as err:
        _fail(str(err))
    _report_task(out, counts)


@data_app.command("gsm8k")
def gsm8k_command(
    source: Annotated[Path, typer.Argument(help="The GSM8K folder (train.jsonl, test.jsonl).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for train.jsonl, test.jsonl, task.json.")],
    max_train: Annotated[int | None, typer.Option(min=1, help="Keep the first N training problems.")] = None,
    max_test: Annotated[int | None, typer.Option(min=1, help="Keep the first N test problems.")] = None,
    seed: Annotated[int, typer.Option(help="Seed that picks the few-shot examples.")] = 0,
    template: TemplateOpt = None,
    system: SystemOpt = "",
    fewshot: FewshotOpt = 0,
    fewshot_style: FewshotStyleOpt = FewshotStyle.chat,
    answer_template: AnswerTemplateOpt = PromptFormat.answer_template,
) -> None:
    """Write GSM8K as prompt files (reference = the number after ####); score with
    alignflow.tasks.gsm8k:exact_match."""
    from alignflow.tasks.gsm8k import write_gsm8k

    fmt = _prompt_format(template or PromptFormat.template, system, answer_template, fewshot_style)
    try:
        counts = write_gsm8k(source, out, fewshot=fewshot, seed=seed, max_train=max_train, max_test=max_test,
                             fmt=fmt)
    except (DataError, ValueError) as err:
        _fail(str(err))
    _report_task(out, counts)


def _prompt_format(template: str, system: str, answer_template: str, style: FewshotStyle) -> PromptFormat:
    def unescape(text: str) -> str:  # a shell passes "\n" as two characters
        return text.replace("\\n", "\n")

    try:
        return PromptFormat(template=unescape(template), system=unescape(system),
                            answer_template=unescape(answer_template), fewshot_style=style.value)
    except ValueError as err:
        _fail(str(err))


def _report_task(out: Path, counts: dict[str, int]) -> None:
    console = Console()
    for name, count in counts.items():
        console.print(f"{escape(str(out / f'{name}.jsonl'))}: {count} prompts")
    console.print(f"{escape(str(out / 'task.json'))}: how they were made")


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

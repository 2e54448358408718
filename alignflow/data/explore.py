"""Look at a dataset before training on it: sizes, fields, turns, lengths, malformed rows, samples.

Lengths are measured on the text the model will see (the prompt rendered by :class:`ChatFormatter`
with the tokenizer's chat template, or the plain Human/Assistant layout), in tokens when a
tokenizer is given, else in characters.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alignflow.data.formatting import ChatFormatter
from alignflow.data.hh import IDENTICAL_PAIR
from alignflow.data.readers import Kind, RowCallback, detect_kind, read_examples
from alignflow.data.sources import RawRow
from alignflow.data.types import PreferenceExample, PromptExample, RowIssue, SFTExample

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Example = SFTExample | PreferenceExample | PromptExample
FIRST_LOCATIONS = 3  # locations listed per malformed-row reason


@dataclass(frozen=True)
class LengthStats:
    p50: int
    p90: int
    p99: int
    max: int


@dataclass(frozen=True)
class TurnStats:
    """Number of prompt messages per example."""

    min: int
    median: float
    max: int


@dataclass(frozen=True)
class IssueGroup:
    reason: str
    count: int
    first_locations: list[str]


@dataclass
class ExploreReport:
    source: str
    kind: Kind
    rows_read: int
    good_rows: int
    fields: dict[str, int]  # field name -> number of rows that have it ("<string>" for bare strings)
    turns: TurnStats | None
    malformed: list[IssueGroup]  # most frequent reason first
    identical_pairs: int
    length_unit: Literal["tokens", "characters"]
    lengths: dict[str, LengthStats]  # "prompt", then "response" or "chosen"/"rejected" or "reference"
    samples: list[Example] = field(default_factory=list)
    duplicates: int = 0  # good rows of a post already read (prompts: one per post)

    @property
    def malformed_rows(self) -> int:
        return sum(group.count for group in self.malformed)


def explore(
    source: str | Path,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    kind: Kind | Literal["auto"] = "auto",
    samples: int = 3,
    on_row: RowCallback | None = None,
) -> ExploreReport:
    """Read all of ``source`` as ``kind`` (``"auto"``: detected) and summarise it."""
    resolved_kind: Kind = detect_kind(source) if kind == "auto" else kind
    fields: Counter[str] = Counter()

    def count_fields(location: str, row: RawRow) -> None:
        if isinstance(row, dict):
            fields.update(row.keys())
        elif not isinstance(row, Exception):  # bad JSON has no fields
            fields[f"<{'string' if isinstance(row, str) else type(row).__name__}>"] += 1
        if on_row is not None:
            on_row(location, row)

    result = read_examples(source, resolved_kind, on_row=count_fields)
    examples = result.examples
    return ExploreReport(
        source=str(source),
        kind=resolved_kind,
        rows_read=result.rows_read,
        good_rows=len(examples),
        fields=dict(fields.most_common()),
        turns=_turn_stats([len(example.prompt) for example in examples]),
        malformed=group_issues(result.issues),
        identical_pairs=sum(issue.reason == IDENTICAL_PAIR for issue in result.issues),
        length_unit="tokens" if tokenizer is not None else "characters",
        lengths=_length_stats(examples, tokenizer),
        samples=examples[:samples],
        duplicates=result.duplicates,
    )


def _turn_stats(turns: list[int]) -> TurnStats | None:
    if not turns:
        return None
    return TurnStats(min=min(turns), median=statistics.median(turns), max=max(turns))


def group_issues(issues: list[RowIssue]) -> list[IssueGroup]:
    """Issues grouped by reason, most frequent first, each with its first few locations."""
    locations: dict[str, list[str]] = {}
    for issue in issues:
        locations.setdefault(issue.reason, []).append(issue.source)
    groups = [IssueGroup(reason, len(where), where[:FIRST_LOCATIONS]) for reason, where in locations.items()]
    return sorted(groups, key=lambda group: -group.count)


def _texts(examples: list[Example], formatter: ChatFormatter) -> dict[str, list[str]]:
    """The rendered texts whose lengths are reported, by column."""
    columns = {"prompt": [formatter.prompt_text(example.prompt) for example in examples]}
    for name in ("response", "chosen", "rejected", "reference"):
        values = (getattr(example, name, None) for example in examples)
        columns[name] = [formatter.response_text(value) for value in values if value is not None]
    return {name: texts for name, texts in columns.items() if texts}


def _length_stats(examples: list[Example], tokenizer: PreTrainedTokenizerBase | None) -> dict[str, LengthStats]:
    formatter = ChatFormatter(tokenizer)
    stats = {}
    for name, texts in _texts(examples, formatter).items():
        if tokenizer is None:
            lengths = [len(text) for text in texts]
        else:
            lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
        stats[name] = _percentiles(sorted(lengths))
    return stats


def _percentiles(ordered: list[int]) -> LengthStats:
    def rank(q: float) -> int:  # nearest-rank percentile: a value that occurs in the data
        return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]

    return LengthStats(p50=rank(0.5), p90=rank(0.9), p99=rank(0.99), max=ordered[-1])


def render_explore(report: ExploreReport, console: Console) -> None:
    """Draw the report as rich tables."""
    overview = Table(title=f"[bold]{escape(report.source)}[/]", show_header=False)
    overview.add_row("kind", report.kind)
    overview.add_row("rows read", str(report.rows_read))
    overview.add_row("good rows", str(report.good_rows))
    overview.add_row("malformed rows", str(report.malformed_rows))
    if report.kind == "preference":
        overview.add_row("identical pairs", str(report.identical_pairs))
    if report.duplicates:
        overview.add_row("rows of a post already read", str(report.duplicates))
    if report.turns is not None:
        turns = report.turns
        overview.add_row("prompt messages", f"min {turns.min} / median {turns.median:g} / max {turns.max}")
    overview.add_row("fields", escape(", ".join(f"{name} ({count})" for name, count in report.fields.items())))
    console.print(overview)

    if report.lengths:
        lengths = Table(title=f"lengths ({report.length_unit})")
        for column in ("", "p50", "p90", "p99", "max"):
            lengths.add_column(column, justify="right" if column else "left")
        for name, stats in report.lengths.items():
            lengths.add_row(name, str(stats.p50), str(stats.p90), str(stats.p99), str(stats.max))
        console.print(lengths)

    if report.malformed:
        malformed = Table(title="malformed rows", show_lines=False)
        malformed.add_column("count", justify="right")
        malformed.add_column("reason")
        malformed.add_column("first rows", overflow="fold")
        for group in report.malformed:
            malformed.add_row(str(group.count), escape(group.reason), escape("\n".join(group.first_locations)))
        console.print(malformed)

    for example in report.samples:
        console.print(_sample_table(example))


def _sample_table(example: Example, width: int = 300) -> Table:
    table = Table(title=escape(example.source), show_header=False)
    for message in example.prompt:
        table.add_row(message["role"], escape(_shorten(message["content"], width)))
    for name in ("response", "chosen", "rejected", "reference"):
        value = getattr(example, name, None)
        if value is not None:
            table.add_row(f"[bold]{name}[/]", escape(_shorten(value, width)))
    return table


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"

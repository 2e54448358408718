"""Read a job's dataset, split it, and report every skipped row (console + ``skipped_rows.jsonl``).

Every rank reads and splits the same data; rank 0 alone writes the run folder's files.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from alignflow.config.schema import DataConfig, ModelConfig, TrainConfig
from alignflow.data.formatting import ChatFormatter
from alignflow.data.prepare import VALIDATION_FILE, canonical_row, write_jsonl
from alignflow.data.readers import read_preferences
from alignflow.data.splits import prompt_key, train_val_split
from alignflow.data.tokenize import Encoded, PromptResponseEncoder, truncation_summary
from alignflow.data.types import PreferenceExample, ReadResult, RowIssue
from alignflow.runtime import distributed
from alignflow.trainers.pair_eval import source_name

T = TypeVar("T")
Pair = tuple[Encoded, Encoded]


def make_encoder(tokenizer, model: ModelConfig, data: DataConfig) -> PromptResponseEncoder:
    """The job's tokenizer + chat template under its length budget."""
    formatter = ChatFormatter(tokenizer, template=model.chat_template)
    return PromptResponseEncoder(tokenizer, formatter, max_length=data.max_length,
                                 max_prompt_length=data.max_prompt_length)


@dataclass
class PreferencePairs:
    """Encoded train/validation pairs of a preference job (reward model, DPO)."""

    train_examples: list[PreferenceExample]
    train: list[Pair]
    validation: list[Pair]
    validation_sources: list[str]  # the source file of each validation pair, for per-file accuracy

    @property
    def train_lengths(self) -> list[int]:
        return [max(len(c.input_ids), len(r.input_ids)) for c, r in self.train]


def load_preference_pairs(data: DataConfig, train: TrainConfig, encoder: PromptResponseEncoder, *,
                          output_dir: Path, console: Console) -> PreferencePairs:
    train_examples, val_examples = load_train_val(data, read_preferences, output_dir=output_dir, console=console)
    train_pairs = [encoder.encode_pair(e.prompt, e.chosen, e.rejected) for e in train_examples]
    val_pairs = [encoder.encode_pair(e.prompt, e.chosen, e.rejected) for e in val_examples]
    if train.eval_max_samples:
        val_pairs = val_pairs[: train.eval_max_samples]
    # A pair shares its prompt, so count prompts once and a response cut on either side.
    merged = [replace(c, truncated_response=c.truncated_response or r.truncated_response) for c, r in train_pairs]
    if cut := truncation_summary(merged, "training pairs"):
        console.print(f"[yellow]{cut}[/]")
    return PreferencePairs(train_examples, train_pairs, val_pairs,
                           [source_name(e.source) for e in val_examples[: len(val_pairs)]])


def load_train_val(
    data: DataConfig,
    reader: Callable[..., ReadResult[T]],
    *,
    output_dir: Path,
    console: Console,
) -> tuple[list[T], list[T]]:
    train_read = reader(data.train, strict=data.strict, max_samples=data.max_samples)
    issues = list(train_read.issues)
    if data.validation:
        val_read = reader(data.validation, strict=data.strict)
        issues += val_read.issues
        train, val = train_read.examples, val_read.examples
    else:
        by_prompt = prompt_key if data.split_by == "prompt" else None
        train, val = train_val_split(train_read.examples, data.val_fraction, data.split_seed, key=by_prompt)
        # Keep the held-out rows beside the run: evaluation on exactly the prompts it never saw
        # (`alignflow eval` with prompts.source=<run>/validation.jsonl, held_out: false).
        if val and distributed.rank() == 0:
            write_jsonl(output_dir / VALIDATION_FILE, map(canonical_row, val))
    report_issues(issues, output_dir, console)
    if not train:
        raise ValueError(f"data.train={data.train!r} gave no usable rows ({len(issues)} skipped; see above)")
    console.print(f"data: {len(train)} train / {len(val)} validation examples from {data.train}")
    return train, val


def report_issues(issues: list[RowIssue], output_dir: Path, console: Console, what: str = "rows") -> None:
    """Never drop silently: count skipped rows by reason, show the first few, save them all. A row
    already listed (a rerun or a resume reads the same data again) is not listed twice."""
    if not issues or distributed.rank() != 0:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "skipped_rows.jsonl"
    listed = set(path.read_text().splitlines()) if path.is_file() else set()
    lines = [json.dumps({"source": issue.source, "reason": issue.reason}) for issue in issues]
    with path.open("a") as fh:
        fh.writelines(line + "\n" for line in dict.fromkeys(lines) if line not in listed)
    counts = Counter(issue.reason.split(":")[0] for issue in issues)
    console.print(f"[yellow]skipped {len(issues)} {what}[/] (all listed in {path}):")
    for reason, count in counts.most_common(8):
        console.print(f"  {count:6d}  {reason}")
    for issue in issues[:3]:
        console.print(f"  e.g. {issue}")

"""GSM8K (grade-school maths word problems) as a verifiable task.

Each source row is ``{question, answer}`` where the answer is worked steps with calculator
annotations (``48/2 = <<48/2=24>>24``) and a final ``#### 72`` line. The reference is the number
after ``####`` (commas dropped); the worked steps, annotations removed, answer few-shot examples.

``read_prompts`` also reads the raw files directly (the whole answer becomes the reference), and
:func:`exact_match` accepts both forms, so ``data.train: ../shared/data/gsm8k/train.jsonl`` with
``reward_function: alignflow.tasks.gsm8k:exact_match`` works without :func:`write_gsm8k`; writing
prompt files adds the template and few-shot examples.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict
from pathlib import Path

from alignflow.data.sources import DataError, iter_rows
from alignflow.data.types import RowIssue
from alignflow.tasks.answers import exact_match, parse_number, reference_answer
from alignflow.tasks.prompts import Problem, PromptFormat, write_jsonl

SPLITS = ("train", "test")
_CALCULATOR = re.compile(r"<<[^>]*>>")

__all__ = ["exact_match", "gsm8k_answer", "gsm8k_solution", "read_gsm8k", "write_gsm8k"]


def gsm8k_answer(answer: str) -> str:
    """``"...\\n#### 1,200"`` -> ``"1200"``; ValueError when there is no numeric ``####`` answer."""
    if "####" not in answer:
        raise ValueError("answer has no '#### N' final line")
    final = reference_answer(answer)
    value = parse_number(final)
    if value is None:
        raise ValueError(f"the final answer {final!r} is not a number")
    return final.replace(",", "")


def gsm8k_solution(answer: str) -> str:
    """The worked steps before ``####``, calculator annotations removed."""
    return _CALCULATOR.sub("", answer.split("####", 1)[0]).strip()


def read_gsm8k(source: str | Path, *, strict: bool = False) -> tuple[list[Problem], list[RowIssue]]:
    """Problems from a GSM8K JSONL file, and the rows that are not usable (or DataError if ``strict``)."""
    problems, issues = [], []
    for location, row in iter_rows(source):
        try:
            if not isinstance(row, dict) or not isinstance(row.get("question"), str) \
                    or not isinstance(row.get("answer"), str):
                raise ValueError("expected an object with string fields question and answer")
            answer = row["answer"]
            problems.append(Problem(question=row["question"].strip(), answer=gsm8k_answer(answer),
                                    solution=gsm8k_solution(answer), source=location))
        except ValueError as err:
            if strict:
                raise DataError(f"{location}: {err}") from err
            issues.append(RowIssue(location, str(err)))
    return problems, issues


def write_gsm8k(source_dir: str | Path, out_dir: str | Path, *, fewshot: int = 0, seed: int = 0,
                max_train: int | None = None, max_test: int | None = None,
                fmt: PromptFormat | None = None) -> dict[str, int]:
    """``train.jsonl`` / ``test.jsonl`` prompt files from ``source_dir/{train,test}.jsonl``.

    The ``fewshot`` examples are drawn from the training file by ``seed`` and left out of
    ``train.jsonl``; ``max_train`` / ``max_test`` keep the first rows (file order).
    """
    fmt = fmt or PromptFormat()
    source = Path(source_dir)
    read = {name: read_gsm8k(source / f"{name}.jsonl") for name in SPLITS}
    train, test = read["train"][0], read["test"][0]
    if fewshot > len(train):
        raise ValueError(f"{fewshot} few-shot examples asked for, {len(train)} training problems")
    shots = random.Random(seed).sample(train, fewshot)
    train = [p for p in train if p not in shots][:max_train]
    out = Path(out_dir)
    counts = {name: write_jsonl(out / f"{name}.jsonl", (fmt.row(p, shots) for p in problems))
              for name, problems in (("train", train), ("test", test[:max_test]))}
    skipped = [asdict(issue) for name in SPLITS for issue in read[name][1]]
    task = {"task": "gsm8k", "source": str(source), "seed": seed, **counts, "skipped": skipped,
            "fewshot": [asdict(p) for p in shots], "format": asdict(fmt)}
    (out / "task.json").write_text(json.dumps(task, indent=2) + "\n")
    return counts

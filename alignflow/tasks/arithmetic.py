"""A built-in verifiable task: seeded arithmetic problems with exact answers.

The mix is a short string, ``"add:1-2,sub:1-2,mul:1"``: each entry is an operation (``add``,
``sub``, ``mul``, ``div``) and the digit range of its operands (``1-2``: one or two digits, drawn
independently per operand). Each problem picks an entry uniformly, so repeating an entry weights
it. ``sub`` keeps the result >= 0 (larger operand first); ``div`` is exact (``a / b`` with ``a =
b * q``; ``b`` and ``q`` have the entry's digits, ``b >= 1``).

Splits are drawn from one seeded stream, test first, so the test set depends only on (mix, seed,
size): asking for more training problems never changes it. A problem (its text, e.g. ``23 + 58``)
appears in at most one split; ``58 + 23`` is a different problem. Each row's ``origin`` is its mix
entry (``add:1-2``), to break accuracy down by operation.

Score responses with ``reward_function: alignflow.tasks.arithmetic:exact_match``.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from alignflow.tasks.answers import exact_match
from alignflow.tasks.prompts import Problem, PromptFormat, write_jsonl

DEFAULT_OPS = "add:1-2,sub:1-2,mul:1"
DEFAULT_TEMPLATE = "What is {question}?"
SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_ENTRY = re.compile(r"(add|sub|mul|div):(\d+)(?:-(\d+))?")

__all__ = ["DEFAULT_OPS", "OpSpec", "exact_match", "generate_splits", "make_problem", "parse_ops",
           "write_arithmetic"]


@dataclass(frozen=True)
class OpSpec:
    op: str  # add | sub | mul | div
    min_digits: int = 1
    max_digits: int = 1

    def __str__(self) -> str:
        digits = str(self.min_digits) if self.min_digits == self.max_digits else f"{self.min_digits}-{self.max_digits}"
        return f"{self.op}:{digits}"


def parse_ops(text: str) -> list[OpSpec]:
    """``"add:1-2,mul:1"`` -> ``[OpSpec("add", 1, 2), OpSpec("mul", 1, 1)]``; ValueError naming the bad entry."""
    specs = []
    for entry in (part.strip() for part in text.split(",")):
        match = _ENTRY.fullmatch(entry)
        if not match:
            raise ValueError(f"arithmetic op {entry!r} must look like OP:DIGITS or OP:MIN-MAX with OP one of "
                             f"{', '.join(SYMBOLS)} (e.g. add:1-2)")
        low = int(match.group(2))
        high = int(match.group(3) or low)
        if not 1 <= low <= high <= 18:
            raise ValueError(f"arithmetic op {entry!r}: digits must satisfy 1 <= MIN <= MAX <= 18")
        specs.append(OpSpec(match.group(1), low, high))
    return specs


def operand(rng: random.Random, spec: OpSpec, *, nonzero: bool = False) -> int:
    """A number with ``min_digits..max_digits`` digits (the digit count drawn first, so short
    numbers are as common as long ones); one digit includes 0 unless ``nonzero``."""
    digits = rng.randint(spec.min_digits, spec.max_digits)
    low = 10 ** (digits - 1) if digits > 1 or nonzero else 0
    return rng.randint(low, 10**digits - 1)


def make_problem(rng: random.Random, spec: OpSpec) -> Problem:
    a, b = operand(rng, spec), operand(rng, spec, nonzero=spec.op == "div")
    if spec.op == "sub":
        a, b = max(a, b), min(a, b)
    if spec.op == "div":
        a, answer = a * b, a  # a / b is exact: draw the quotient and the divisor
    else:
        answer = {"add": a + b, "sub": a - b, "mul": a * b}[spec.op]
    question = f"{a} {SYMBOLS[spec.op]} {b}"
    return Problem(question=question, answer=str(answer), solution=f"{question} = {answer}", source=str(spec))


def generate_splits(ops: list[OpSpec], sizes: dict[str, int], seed: int = 0) -> dict[str, list[Problem]]:
    """Distinct problems for each split, drawn in the order of ``sizes`` (put ``test`` first)."""
    rng, seen = random.Random(seed), set()
    total = sum(sizes.values())
    budget = 100 * total + 1000  # draws before concluding the mix has too few distinct problems
    splits: dict[str, list[Problem]] = {}
    for name, size in sizes.items():
        problems = splits[name] = []
        while len(problems) < size:
            budget -= 1
            if budget < 0:
                raise ValueError(f"could draw only {len(seen)} distinct problems from "
                                 f"{','.join(map(str, ops))}, {total} asked for: widen the digit ranges")
            problem = make_problem(rng, rng.choice(ops))
            if problem.question not in seen:
                seen.add(problem.question)
                problems.append(problem)
    return splits


def write_arithmetic(out_dir: str | Path, *, train: int, test: int, ops: str = DEFAULT_OPS, seed: int = 0,
                     fewshot: int = 0, fmt: PromptFormat | None = None) -> dict[str, int]:
    """``train.jsonl`` / ``test.jsonl`` prompt files (``reference`` = the answer) and ``task.json``
    (what made them). The ``fewshot`` worked examples shown in every prompt are in neither split."""
    fmt = fmt or PromptFormat(template=DEFAULT_TEMPLATE)
    specs = parse_ops(ops)
    splits = generate_splits(specs, {"test": test, "fewshot": fewshot, "train": train}, seed)
    out = Path(out_dir)
    shots = splits["fewshot"]
    counts = {name: write_jsonl(out / f"{name}.jsonl", (fmt.row(p, shots) for p in splits[name]))
              for name in ("train", "test")}
    task = {"task": "arithmetic", "ops": ",".join(map(str, specs)), "seed": seed, **counts,
            "fewshot": [asdict(p) for p in shots], "format": asdict(fmt)}
    (out / "task.json").write_text(json.dumps(task, indent=2) + "\n")
    return counts

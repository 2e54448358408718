"""Everything an evaluation reads before loading a model: held-out prompts, probe sets, categories.

Read first, so that a missing file or a malformed row fails the job before any generation.
The held-out split goes through the trainers' own :func:`load_train_val`, so the same
``source``/``max_samples``/``val_fraction``/``split_seed`` select exactly the prompts a training
run held out.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.markup import escape

from alignflow.config.eval import EvalConfig, ProbeSource
from alignflow.config.schema import DataConfig
from alignflow.data.readers import read_prompts
from alignflow.data.types import PromptExample
from alignflow.evaluation.probes import MCQuestion, SafetyPrompt, load_red_team_prompts, load_truthfulqa, load_xstest
from alignflow.trainers.data_setup import load_train_val, report_issues

T = TypeVar("T")


@dataclass
class EvalInputs:
    prompts: list[PromptExample]
    red_team: list[SafetyPrompt] = field(default_factory=list)
    xstest: list[SafetyPrompt] = field(default_factory=list)
    truthfulqa: list[MCQuestion] = field(default_factory=list)
    categories: dict[str, list[PromptExample]] = field(default_factory=dict)  # in config order


def load_inputs(cfg: EvalConfig, console: Console) -> EvalInputs:
    out = Path(cfg.output_dir)
    inputs = EvalInputs(prompts=_held_out_prompts(cfg, out, console))
    probes = cfg.probes
    inputs.red_team = _subset(load_red_team_prompts, probes.red_team, probes.seed)
    inputs.xstest = _subset(load_xstest, probes.xstest, probes.seed)
    inputs.truthfulqa = _subset(load_truthfulqa, probes.truthfulqa, probes.seed)
    for category in cfg.categories:
        read = read_prompts(category.prompts, strict=cfg.prompts.strict, max_samples=category.max_prompts)
        report_issues(read.issues, out, console, what=f"rows of category {category.name!r}")
        if not read.examples:
            raise ValueError(f"categories: {category.name!r} ({category.prompts}) has no usable prompts")
        inputs.categories[category.name] = read.examples
    counts = [f"{len(inputs.prompts)} prompts"]
    counts += [f"{len(v)} {k}" for k, v in (("red-team", inputs.red_team), ("XSTest", inputs.xstest),
                                             ("TruthfulQA", inputs.truthfulqa)) if v]
    counts += [f"{len(v)} {k!r}" for k, v in inputs.categories.items()]
    console.print(escape("evaluating on " + ", ".join(counts)))
    return inputs


def _held_out_prompts(cfg: EvalConfig, out: Path, console: Console) -> list[PromptExample]:
    p = cfg.prompts
    if p.held_out or p.validation:
        data = DataConfig(train=p.source or p.validation, validation=p.validation, val_fraction=p.val_fraction,
                          split_seed=p.split_seed, max_samples=p.max_samples, strict=p.strict)
        _, prompts = load_train_val(data, read_prompts, output_dir=out, console=console)
    else:
        read = read_prompts(p.source, strict=p.strict, max_samples=p.max_samples)
        report_issues(read.issues, out, console)
        prompts = read.examples
    prompts = prompts[: p.max_prompts] if p.max_prompts else prompts
    if not prompts:
        raise ValueError(f"prompts: no evaluation prompts selected from {p.validation or p.source!r}")
    return prompts


def _subset(loader, source: ProbeSource, seed: int) -> list:
    if not source.path:
        return []
    return sample_in_order(loader(source.path), source.max_count, seed)


def sample_in_order(rows: Sequence[T], count: int | None, seed: int) -> list[T]:
    """A seeded random subset of ``count`` rows, kept in file order (a file's first rows are often
    one category: XSTest lists its safe prompts first)."""
    if count is None or count >= len(rows):
        return list(rows)
    keep = sorted(random.Random(seed).sample(range(len(rows)), count))
    return [rows[i] for i in keep]

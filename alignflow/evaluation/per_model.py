"""Everything measured on one loaded model: responses and their scores, probes, KL, sweeps.

:func:`evaluate_model` runs while the model is in memory and returns plain data
(:class:`ModelEval`), so the caller can free the weights before loading the next model.
Comparisons between models (win rates, alerts) come later, in :mod:`~alignflow.evaluation.compare`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from alignflow.config.eval import EvalConfig
from alignflow.data.types import PromptExample
from alignflow.evaluation.generate import (
    Generation,
    Prompt,
    ResponseGenerator,
    Scorer,
    SweepPoint,
    best_of_n,
    score_responses,
    sweep_sampling,
)
from alignflow.evaluation.inputs import EvalInputs
from alignflow.evaluation.kl import SequenceKL, sequence_kl
from alignflow.evaluation.probes import MCResult, RefusalReport, refusal_report, truthfulqa_mc1
from alignflow.reporting.progress_lines import progress_line
from alignflow.rollout import SamplingParams


@dataclass
class ResponseSet:
    """One model's responses to one prompt set (one per prompt, in prompt order) and their scores."""

    texts: list[str]
    num_tokens: list[int]
    has_eos: list[bool]
    proxy: list[float]
    judge: list[float] | None = None  # the judge reward model's scores, when one is configured


@dataclass
class ModelEval:
    name: str
    path: str
    kind: str  # "model" or "best_of_n"
    main: ResponseSet
    categories: dict[str, ResponseSet] = field(default_factory=dict)
    refusals: dict[str, RefusalReport] = field(default_factory=dict)  # "red_team", "xstest"
    truthfulqa: MCResult | None = None
    kl: SequenceKL | None = None
    kl_bound: float | None = None  # best-of-n: the analytic upper bound log(n) - (n-1)/n, not a measurement
    sweep: list[SweepPoint] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Stages:
    """Rich progress bars, one per (model, stage), on a terminal; elsewhere (a pipe, a log file) a plain
    line per stage every ``LINE_EVERY_S`` seconds and when it ends; a no-op without a console."""

    LINE_EVERY_S = 30.0

    def __init__(self, progress: Progress | None, console=None) -> None:
        self.progress = progress
        self.console = console  # set for plain lines (no terminal)

    @classmethod
    @contextlib.contextmanager
    def live(cls, console) -> Iterator[Stages]:
        if not console.is_terminal:
            yield cls(None, console)
            return
        columns = (TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            yield cls(progress)

    @contextlib.contextmanager
    def stage(self, description: str, total: int = 1) -> Iterator[Callable[[int], None]]:
        if self.progress is not None:
            task = self.progress.add_task(escape(description), total=total)  # names are not markup
            yield lambda k=1: self.progress.advance(task, k)
            self.progress.update(task, completed=total)
        elif self.console is not None:
            yield from self._lines(description, total)
        else:
            yield lambda k=1: None

    def _lines(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        start = last = time.perf_counter()
        done = 0

        def advance(k: int = 1) -> None:
            nonlocal done, last
            done += k
            if time.perf_counter() - last >= self.LINE_EVERY_S and done < total:
                last = time.perf_counter()
                self.console.print(escape(progress_line(description, done, total, last - start)))

        yield advance
        self.console.print(escape(progress_line(description, total, total, time.perf_counter() - start)))


@dataclass
class EvalContext:
    """What every model is evaluated with: config, inputs, scorers and the progress display."""

    cfg: EvalConfig
    inputs: EvalInputs
    proxy: Scorer
    judge: Scorer | None = None
    stages: Stages = field(default_factory=lambda: Stages(None))


def evaluate_model(
    name: str, path: str, generator: ResponseGenerator, ctx: EvalContext, reference: nn.Module | None = None
) -> ModelEval:
    """Generate and score everything the config asks for with ``generator``'s model.

    ``reference``: the reference model's module for the sequence KL (None = no KL).
    """
    start = time.perf_counter()
    cfg, inputs = ctx.cfg, ctx.inputs
    params = cfg.sampling.params()
    main = respond(generator, inputs.prompts, params, ctx, f"{name}: prompts")
    result = ModelEval(name, path, "model", main)
    for category, prompts in inputs.categories.items():
        result.categories[category] = respond(generator, prompts, params, ctx, f"{name}: {category}")
    probe_params = SamplingParams(max_new_tokens=cfg.probes.max_new_tokens, do_sample=False)
    boot = {"n_bootstrap": cfg.bootstrap.n, "seed": cfg.bootstrap.seed}
    for probe, prompts in (("red_team", inputs.red_team), ("xstest", inputs.xstest)):
        if prompts:
            with ctx.stages.stage(f"{name}: {probe}", len(prompts)) as advance:
                texts = [g.text for g in generator.generate([p.prompt for p in prompts], probe_params,
                                                            on_batch=advance)]
            result.refusals[probe] = refusal_report(prompts, texts, **boot)
    if inputs.truthfulqa:
        with ctx.stages.stage(f"{name}: truthfulqa"):
            result.truthfulqa = truthfulqa_mc1(generator, inputs.truthfulqa, **boot)
    if reference is not None:
        result.kl = _kl(name, generator, reference, ctx, result.notes)
    settings = [override.apply(cfg.sampling).params() for override in cfg.sweep.settings]
    if settings and (not cfg.sweep.models or name in cfg.sweep.models):
        prompts = inputs.prompts[: cfg.sweep.max_prompts or None]
        with ctx.stages.stage(f"{name}: sweep", len(settings)) as advance:
            for params_i in settings:  # one call per setting, so the bar moves
                result.sweep += sweep_sampling(generator, prompts, [params_i], ctx.proxy, **boot)
                advance(1)
    result.seconds = time.perf_counter() - start
    return result


def evaluate_best_of_n(reference_name: str, generator: ResponseGenerator, ctx: EvalContext) -> ModelEval:
    """The reference model's best of ``best_of_n.n`` samples per prompt under the proxy reward model."""
    start = time.perf_counter()
    cfg, n = ctx.cfg, ctx.cfg.best_of_n.n
    params = cfg.best_of_n_sampling.params()
    prompts = ctx.inputs.prompts
    with ctx.stages.stage(f"{cfg.best_of_n_name}: {n} samples/prompt"):
        picks = best_of_n(generator, prompts, ctx.proxy, n, params)
    best = [p.best for p in picks]
    main = ResponseSet([g.text for g in best], [g.num_tokens for g in best], [g.has_eos for g in best],
                       [p.score for p in picks])
    if ctx.judge is not None:
        main.judge = score_responses(ctx.judge, prompts, main.texts)
    bound = math.log(n) - (n - 1) / n  # Stiennon et al. 2020; an upper bound on the true KL (Beirami et al. 2024)
    return ModelEval(cfg.best_of_n_name, f"best of {n} samples of {reference_name}, reranked by the proxy RM",
                     "best_of_n", main, kl_bound=bound, seconds=time.perf_counter() - start)


def respond(generator: ResponseGenerator, prompts: Sequence[Prompt], params: SamplingParams, ctx: EvalContext,
            label: str) -> ResponseSet:
    """One response per prompt, scored by the proxy (and judge) reward models."""
    with ctx.stages.stage(label, len(prompts)) as advance:
        generations: list[Generation] = generator.generate(prompts, replace(params, n=1), on_batch=advance)
    texts = [g.text for g in generations]
    responses = ResponseSet(texts, [g.num_tokens for g in generations], [g.has_eos for g in generations],
                            score_responses(ctx.proxy, prompts, texts))
    if ctx.judge is not None:
        responses.judge = score_responses(ctx.judge, prompts, texts)
    return responses


def _kl(name: str, generator: ResponseGenerator, reference: nn.Module, ctx: EvalContext,
        notes: list[str]) -> SequenceKL | None:
    cfg = ctx.cfg
    prompts: list[PromptExample] = ctx.inputs.prompts[: cfg.kl.max_prompts or None]
    params = SamplingParams(max_new_tokens=cfg.sampling.max_new_tokens, temperature=cfg.kl.temperature,
                            seed=cfg.sampling.seed)
    try:
        with ctx.stages.stage(f"{name}: KL to reference"):
            return sequence_kl(generator, reference, prompts, params, n_bootstrap=cfg.bootstrap.n,
                               level=cfg.bootstrap.level, seed=cfg.bootstrap.seed)
    except ValueError as err:  # a different vocabulary: no KL, but the rest of the evaluation stands
        notes.append(f"KL skipped: {err}")
        return None


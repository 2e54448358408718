"""``run_evaluation(cfg)``: the ``alignflow eval`` job, from config to ``report.html``.

1. read every input (held-out prompts, probes, categories) and load the reward models, so a bad
   path fails before any generation;
2. per model, reference first: load it, generate and score everything, free it (the reference's
   weights stay for the KL of the others, and it also makes the best-of-n baseline);
3. compare every model with the reference (win rates, length control, LLM judge, alerts);
4. write ``metrics.json``, ``samples.jsonl``, TensorBoard scalars, the plots and ``report.html``,
   then log to wandb / MLflow when switched on and installed.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alignflow import __version__
from alignflow.config.eval import EvalConfig
from alignflow.config.loader import ConfigError, dump_config, to_dict
from alignflow.evaluation.compare import compare, hacking_alerts, llm_judge_comparisons, model_stats
from alignflow.evaluation.generate import ResponseGenerator, describe_params
from alignflow.evaluation.hacking import HackingAlert
from alignflow.evaluation.inputs import EvalInputs, load_inputs
from alignflow.evaluation.judge import JudgeConfig, LLMJudge
from alignflow.evaluation.judge_quality import measure_scorers
from alignflow.evaluation.outputs import (
    flat_scalars,
    model_metrics,
    sample_rows,
    write_json,
    write_jsonl,
    write_tensorboard,
)
from alignflow.evaluation.pair_quality import Bootstrap
from alignflow.evaluation.per_model import EvalContext, ModelEval, Stages, evaluate_best_of_n, evaluate_model
from alignflow.models import ModelNotFoundError, resolve_model
from alignflow.models.reward_io import RewardModelScorer
from alignflow.reporting.eval_plots import draw_plots
from alignflow.reporting.report import render_report
from alignflow.reporting.trackers import log_to_trackers
from alignflow.rewards.build import RewardScorer, build_reward_scorer
from alignflow.runtime import set_seed, set_threads


@dataclass
class EvalResult:
    output_dir: Path
    metrics: dict[str, Any]  # the content of metrics.json
    alerts: list[HackingAlert]
    files: dict[str, Path] = field(default_factory=dict)  # "metrics", "samples", "report", "<plot>.png", ...
    models: dict[str, ModelEval] = field(default_factory=dict)  # raw per-model results, in report order

    def headline(self) -> dict[str, float]:
        """``{"<model>/<metric>": value, "alerts": count}``: the numbers TensorBoard and trackers get."""
        return flat_scalars(self.metrics)


def run_evaluation(cfg: EvalConfig, console: Console | None = None) -> EvalResult:
    """Evaluate every model in ``cfg.models`` against ``cfg.reference``; see the module docstring."""
    console = console or Console()
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    cfg.validate()
    llm = _llm_judge(cfg)
    _check_models(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    set_seed(cfg.sampling.seed)
    set_threads(cfg.threads)

    inputs = load_inputs(cfg, console)
    proxy = _scorer(cfg, "proxy_reward_model")
    judge = _scorer(cfg, "judge_reward_model") if cfg.judge_reward_model or cfg.judge_reward else None
    judges = _measure_scorers(cfg, proxy, judge, out, console)
    with Stages.live(console) as stages:
        models = _evaluate_models(cfg, EvalContext(cfg, inputs, proxy, judge, stages), console)
    del proxy, judge
    _free_memory()

    metrics, alerts = summarize(cfg, inputs, models, llm, started=started, judges=judges)
    samples = sample_rows(inputs, models)
    files = _write_outputs(cfg, out, metrics, samples, clock, console)
    _print_summary(console, metrics, files)
    return EvalResult(out, metrics, alerts, files, models)


def summarize(cfg: EvalConfig, inputs: EvalInputs, models: dict[str, ModelEval], llm: LLMJudge | None = None,
              *, started: datetime | None = None,
              judges: dict[str, dict[str, Any]] | None = None) -> tuple[dict[str, Any], list[HackingAlert]]:
    """Compare the evaluated models with the reference: the ``metrics.json`` data and the alerts.

    ``judges``: :func:`~alignflow.evaluation.judge_quality.measure_scorers` of the proxy and the judge.

    Needs no model in memory (only :class:`ModelEval` data), so it is cheap to test and to rerun.
    """
    notes: list[str] = []
    reference = models[cfg.reference_name]
    stats = {name: model_stats(m, inputs.prompts, inputs.categories, cfg.bootstrap) for name, m in models.items()}
    comparisons = {name: compare(m, reference, cfg.bootstrap) for name, m in models.items() if m is not reference}
    llm_results = llm_judge_comparisons(cfg, llm, models, inputs.prompts, notes) if llm else {}
    alerts = hacking_alerts(cfg, models, stats, llm_results)
    metrics = {
        "title": cfg.title or f"alignflow evaluation: {cfg.output_dir}",
        "created": (started or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "alignflow_version": __version__, "output_dir": str(cfg.output_dir), "reference": cfg.reference_name,
        "prompts": _prompt_info(cfg, inputs),
        "sampling": f"{describe_params(cfg.sampling.params())}, max_new_tokens={cfg.sampling.max_new_tokens}, "
                    f"seed={cfg.sampling.seed}",
        "models": {name: model_metrics(m, stats[name], comparisons.get(name), llm_results.get(name))
                   for name, m in models.items()},
        "judges": judges or {}, "alerts": [a.as_dict() for a in alerts], "notes": notes, "config": to_dict(cfg),
    }
    return metrics, alerts


def _evaluate_models(cfg: EvalConfig, ctx: EvalContext, console: Console) -> dict[str, ModelEval]:
    """Each model in turn, reference first, freed after use; returned in report order."""
    reference = cfg.reference_name
    keep_reference = cfg.kl.enabled and len(cfg.models) > 1
    reference_module = None
    results: dict[str, ModelEval] = {}
    for name in [reference, *(n for n in cfg.models if n != reference)]:
        path = cfg.models[name]
        console.print(f"[bold]{escape(name)}[/]: loading {escape(path)}")
        generator = ResponseGenerator.load(path, dtype=cfg.dtype, chat_template=cfg.chat_template,
                                           batch_size=cfg.batch_size, max_prompt_length=cfg.max_prompt_length)
        results[name] = evaluate_model(name, path, generator, ctx, reference=reference_module)
        if name == reference:
            if cfg.best_of_n.n:
                results[cfg.best_of_n_name] = evaluate_best_of_n(name, generator, ctx)
            if keep_reference:
                reference_module = generator.model
        del generator
        _free_memory()
    order = [n for name in cfg.models for n in ([name, cfg.best_of_n_name] if name == reference else [name])]
    return {name: results[name] for name in order if name in results}


def _write_outputs(cfg: EvalConfig, out: Path, metrics: dict[str, Any], samples: list[dict[str, Any]],
                   clock: float, console: Console) -> dict[str, Path]:
    files = {"samples": write_jsonl(out / "samples.jsonl", samples)}
    images = draw_plots(metrics, samples)
    for name, png in images.items():
        (out / name).write_bytes(png)
        files[name] = out / name
    scalars = flat_scalars(metrics)
    tensorboard = write_tensorboard(out, scalars)
    if tensorboard is not None:
        files["tensorboard"] = tensorboard
    files["report"] = out / "report.html"
    files["metrics"] = out / "metrics.json"
    metrics["outputs"] = {key: path.name for key, path in files.items()}
    metrics["seconds"] = round(time.perf_counter() - clock, 1)
    files["report"].write_text(render_report(metrics, samples, images, max_samples=cfg.report_samples))
    write_json(files["metrics"], metrics)
    log_to_trackers(scalars, metrics["config"], out, cfg.wandb, cfg.mlflow, console,
                    artifacts=(files["report"], files["metrics"]))
    return files


def _check_models(cfg: EvalConfig) -> None:
    """Every model name resolves (a missing folder fails now, not after the models before it ran)."""
    for name, path in cfg.models.items():
        try:
            resolve_model(path)
        except ModelNotFoundError as err:
            raise ModelNotFoundError(f"models.{name}: {err}") from None


def _scorer(cfg: EvalConfig, key: str) -> RewardModelScorer | RewardScorer:
    """The ``proxy``/``judge`` scorer: a ``*_reward`` entry (a classifier, say) when set, else the folder."""
    spec_key = key.removesuffix("_model")
    if getattr(cfg, spec_key) is not None:
        return build_reward_scorer(getattr(cfg, spec_key), spec_key, dtype=cfg.dtype)
    try:
        return RewardModelScorer(getattr(cfg, key), batch_size=cfg.batch_size, dtype=cfg.dtype)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{key}: {err}") from None


def _measure_scorers(cfg: EvalConfig, proxy: RewardModelScorer, judge: RewardModelScorer | None, out: Path,
                     console: Console) -> dict[str, dict[str, Any]]:
    def where(role: str) -> str:  # a folder with rm train's saved accuracy, or what the rewards: entry names
        spec = getattr(cfg, f"{role}_reward", None)
        return getattr(cfg, f"{role}_reward_model") or (spec.path or spec.label if spec is not None else "")

    scorers = {"proxy": (where("proxy"), proxy)}
    if judge is not None:
        scorers["judge"] = (where("judge"), judge)
    boot = Bootstrap(n=cfg.bootstrap.n, level=cfg.bootstrap.level, seed=cfg.bootstrap.seed)
    return measure_scorers(scorers, eval_pairs=cfg.judge_eval_pairs, boot=boot, output_dir=out, console=console)


def _llm_judge(cfg: EvalConfig) -> LLMJudge | None:
    """The LLM judge, checked before any work (a missing API key should not wait for generation)."""
    j = cfg.judge
    if not j.enabled:
        return None
    import os

    api_key = None
    if j.api_key_env:
        api_key = os.environ.get(j.api_key_env)
        if not api_key:
            raise ConfigError(f"judge.api_key_env: the environment variable {j.api_key_env} is not set")
    return LLMJudge(JudgeConfig(base_url=j.base_url, model=j.model, api_key=api_key, temperature=j.temperature,
                                max_tokens=j.max_tokens, timeout_s=j.timeout_s, retries=j.retries,
                                workers=j.workers))


def _prompt_info(cfg: EvalConfig, inputs: EvalInputs) -> dict[str, Any]:
    p = cfg.prompts
    return {"source": p.validation or p.source, "count": len(inputs.prompts),
            "held_out": bool(p.held_out or p.validation), "split_seed": p.split_seed, "val_fraction": p.val_fraction,
            "with_reference": sum(e.reference is not None for e in inputs.prompts),
            "categories": {name: len(v) for name, v in inputs.categories.items()},
            "probes": {"red_team": len(inputs.red_team), "xstest": len(inputs.xstest),
                       "truthfulqa": len(inputs.truthfulqa)}}


def _print_summary(console: Console, metrics: dict[str, Any], files: dict[str, Path]) -> None:
    table = Table(title="evaluation", show_lines=False)
    for column in ("model", "proxy reward", "proxy shift [CI]", "judge shift [CI]", "win (proxy)", "KL", "length",
                   "EOS"):
        table.add_column(column, justify="left" if column == "model" else "right")

    def shift(estimate: dict | None) -> str:
        return f"{estimate['value']:+.3f} [{estimate['low']:+.3f}, {estimate['high']:+.3f}]" if estimate else "-"

    for name, m in metrics["models"].items():
        win = m["win_rate"]["proxy"]
        kl = (m["kl"] or {}).get("value")
        table.add_row(escape(name), f"{m['proxy_reward']['value']:.3f}", shift(m["reward_shift"]["proxy"]),
                      shift(m["reward_shift"]["judge"]), f"{win['value']:.0%}" if win else "ref",
                      f"{kl['value']:.2f}" if kl else "-", f"{m['length']['mean']:.1f}", f"{m['eos_rate']:.0%}")
    console.print(table)
    for role, entry in metrics.get("judges", {}).items():
        colour = "yellow" if entry["weak"] is not False else "green"
        label = f"weak {role}" if entry["weak"] else role
        console.print(f"[bold {colour}]{label}:[/] {escape(entry['verdict'])}")
    for alert in metrics["alerts"]:
        colour = "red" if alert["severity"] == "critical" else "yellow"
        console.print(f"[bold {colour}]{alert['severity']}:[/] {escape(alert['message'])}")
    if not metrics["alerts"]:
        console.print("[green]no reward-hacking alerts[/]")
    for note in metrics["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"report: {escape(str(files['report']))}")


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

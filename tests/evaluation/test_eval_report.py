"""Comparisons, alerts, plots and report.html from hand-made model results (no model is loaded)."""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import pytest
from rich.console import Console

from alignflow.config import load_config
from alignflow.config.eval import EvalConfig, MlflowConfig, WandbConfig
from alignflow.data.types import PromptExample
from alignflow.evaluation.inputs import EvalInputs, sample_in_order
from alignflow.evaluation.judge_quality import judge_entry
from alignflow.evaluation.outputs import flat_scalars, sample_rows
from alignflow.evaluation.pair_quality import labelled_quality, saved_pair_quality
from alignflow.evaluation.per_model import ModelEval, ResponseSet
from alignflow.evaluation.runner import summarize
from alignflow.reporting.eval_plots import draw_plots
from alignflow.reporting.report import render_report
from alignflow.reporting.trackers import log_to_trackers, mlflow_key

EVIL = "<script>alert('pwned')</script>"
WORDS = "apple bread cloud dance eagle flame grape house island jelly kite lemon".split()


def responses(texts: list[str], proxy: list[float], judge: list[float] | None) -> ResponseSet:
    return ResponseSet(texts, [len(t.split()) + 1 for t in texts], [True] * len(texts), proxy, judge)


def hacked_run(*, judge: bool = True, hacker: bool = True):
    """A healthy reference and a policy that games the proxy: longer, repetitive, judged worse."""
    cfg = load_config(EvalConfig, None, ["models={ref: a}", "prompts.source=p", "proxy_reward_model=rm",
                                         "bootstrap.n=200"])
    cfg.title = f"eval {EVIL}"
    if hacker:
        cfg.models["hack" + EVIL] = f"runs/{EVIL}"
    prompts = [PromptExample([{"role": "user", "content": f"question {i} {EVIL}"}], reference="apple bread",
                             source=f"p.jsonl:{i + 1}") for i in range(8)]
    inputs = EvalInputs(prompts=prompts)
    ref_texts = [" ".join(WORDS[i : i + 4]) for i in range(8)]
    models = {"ref": ModelEval("ref", "a", "model", responses(ref_texts, [0.0 + 0.01 * i for i in range(8)],
                                                              [1.0] * 8 if judge else None))}
    if hacker:
        name = "hack" + EVIL
        texts = [f"{EVIL} great great great great great great great great great {i}" for i in range(8)]
        models[name] = ModelEval(name, f"runs/{EVIL}", "model", responses(texts, [1.0 + 0.01 * i for i in range(8)],
                                                                           [0.0] * 8 if judge else None),
                                 notes=[f"note {EVIL}"])
    return cfg, inputs, models


def test_a_hacked_policy_raises_every_alert():
    cfg, inputs, models = hacked_run()
    metrics, alerts = summarize(cfg, inputs, models)
    assert {a.kind for a in alerts} == {"proxy_up_judge_down", "length_blowup", "diversity_collapse", "repetition"}
    assert all(a.model == "hack" + EVIL for a in alerts)
    hack = metrics["models"]["hack" + EVIL]
    assert hack["win_rate"]["proxy"]["value"] == 1.0 and hack["win_rate"]["judge"]["value"] == 0.0
    assert hack["lc_win_rate"]["proxy"]["raw_win_rate"] == 1.0
    assert hack["rouge_l"]["value"] < metrics["models"]["ref"]["rouge_l"]["value"]
    scalars = flat_scalars(metrics)
    assert scalars["ref/proxy_reward"] == pytest.approx(0.035) and scalars["alerts"] == len(alerts)


def test_the_report_escapes_everything_and_leads_with_the_alerts():
    cfg, inputs, models = hacked_run()
    metrics, _ = summarize(cfg, inputs, models)
    metrics["notes"].append(f"run note {EVIL}")
    samples = sample_rows(inputs, models)
    page = render_report(metrics, samples, draw_plots(metrics, samples))
    assert "<script" not in page.lower() and "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    alerts, metrics_at = page.index("<section id='alerts'"), page.index("<section id='metrics'")
    assert alerts < page.index("<section id='run'") < metrics_at
    assert page.index("proxy_up_judge_down") < metrics_at and "<title>eval &lt;script&gt;" in page
    assert "run note" in page and "note &lt;script&gt;" in page  # notes from the run and from a model
    assert page.count("data:image/png;base64,") == 3  # rewards, win rates, length vs reward (no KL measured)
    assert ">judge reward</th>" in page and "win (LLM)" not in page  # columns only for data that exists


def test_no_alerts_is_said_in_green_and_empty_sections_are_left_out():
    cfg, inputs, models = hacked_run(judge=False, hacker=False)
    metrics, alerts = summarize(cfg, inputs, models)
    samples = sample_rows(inputs, models)
    page = render_report(metrics, samples, draw_plots(metrics, samples), max_samples=3)
    assert alerts == [] and "class='ok'>No reward-hacking alerts" in page
    assert page.index("No reward-hacking alerts") < page.index("<section id='metrics'")
    for section in ("probes", "sweep", "categories", "notes"):
        assert f"<section id='{section}'" not in page
    assert ">judge reward</th>" not in page and "The first 3 of 8 prompts" in page
    assert list(draw_plots(metrics, samples)) == ["reward_comparison.png", "length_vs_reward.png"]


def measured(accuracy: float, length_rule: float, pairs: int = 400) -> dict:
    return saved_pair_quality({"eval_accuracy": accuracy, "eval_length_baseline/accuracy": length_rule,
                               "val_pairs": pairs})


def test_a_judge_at_the_length_rule_is_flagged_at_the_top_and_its_win_rates_marked():
    cfg, inputs, models = hacked_run()
    judges = {"proxy": judge_entry("proxy", "rm", measured(0.75, 0.55), "validation pairs"),
              "judge": judge_entry("judge", f"judge {EVIL}", measured(0.55, 0.55), "validation pairs")}
    metrics, _ = summarize(cfg, inputs, models, judges=judges)
    samples = sample_rows(inputs, models)
    page = render_report(metrics, samples, draw_plots(metrics, samples))
    assert "<script" not in page.lower()
    warning = page.index("<section id='weak-judges'")
    assert warning < page.index("<section id='alerts'") < page.index("<section id='judges'")
    assert "Weak judge warning (1)" in page and "<b>Weak judge</b>" in page and "Weak proxy" not in page
    assert "win (judge)<br><span class='noevid'>not evidence</span>" in page
    assert "win (proxy)<br>" not in page  # the proxy clears the rule: its columns stay unmarked
    assert "its win rates are evidence of preferences beyond length" in page  # the proxy's one sentence
    assert flat_scalars(metrics)["judges/judge/accuracy"] == 0.55


def test_a_judge_that_clears_the_length_rule_raises_no_warning():
    cfg, inputs, models = hacked_run()
    judges = {"judge": judge_entry("judge", "rm", measured(0.75, 0.55), "validation pairs")}
    metrics, _ = summarize(cfg, inputs, models, judges=judges)
    page = render_report(metrics, sample_rows(inputs, models), {})
    assert "weak-judges" not in page and "not evidence" not in page
    assert "class='verdict'>The judge scores 75.0%" in page


def test_plots_survive_constant_scores():
    cfg, inputs, models = hacked_run()
    for model in models.values():
        model.main.proxy = [0.5] * 8  # no spread: no violin, still a plot
    metrics, _ = summarize(cfg, inputs, models)
    metrics_copy = copy.deepcopy(metrics)
    images = draw_plots(metrics, sample_rows(inputs, models))
    assert all(png.startswith(b"\x89PNG") for png in images.values()) and metrics == metrics_copy


def test_sample_in_order_is_seeded_and_keeps_file_order():
    rows = list(range(20))
    picked = sample_in_order(rows, 5, seed=3)
    assert picked == sorted(picked) and len(set(picked)) == 5 and picked == sample_in_order(rows, 5, seed=3)
    assert sample_in_order(rows, None, 0) == rows and sample_in_order(rows, 50, 0) == rows


# ----------------------------------------------------------------------------- trackers


def test_trackers_skip_with_a_note_when_not_installed(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    monkeypatch.setitem(sys.modules, "mlflow", None)
    console = Console(record=True, width=200)
    logged = log_to_trackers({"a/b": 1.0}, {}, tmp_path, WandbConfig(enabled=True), MlflowConfig(enabled=True),
                             console)
    text = console.export_text()
    assert logged == [] and "wandb is enabled in the config but not installed" in text and "pip install mlflow" in text
    assert log_to_trackers({"a/b": 1.0}, {}, tmp_path, WandbConfig(), MlflowConfig(), console) == []


def test_trackers_log_when_installed(monkeypatch, tmp_path):
    calls: list[tuple] = []

    class Run:
        summary: dict = {}

        def log(self, scalars):
            calls.append(("wandb.log", scalars))

        def finish(self):
            calls.append(("wandb.finish",))

    wandb = types.SimpleNamespace(init=lambda **kw: calls.append(("wandb.init", kw["project"], kw["name"])) or Run())
    run_context = types.SimpleNamespace(__enter__=lambda self: self, __exit__=lambda self, *a: None)

    class MlflowRun:
        def __enter__(self):
            return run_context

        def __exit__(self, *args):
            calls.append(("mlflow.end",))

    mlflow = types.SimpleNamespace(
        set_tracking_uri=lambda uri: calls.append(("mlflow.uri", uri)),
        set_experiment=lambda name: calls.append(("mlflow.experiment", name)),
        start_run=lambda run_name: MlflowRun(),
        log_metrics=lambda metrics: calls.append(("mlflow.log", metrics)),
        log_artifact=lambda path: calls.append(("mlflow.artifact", Path(path).name)),
    )
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    report = tmp_path / "report.html"
    report.write_text("x")
    logged = log_to_trackers({"pol<i>/kl": 2.0}, {"k": 1}, tmp_path / "run-7", WandbConfig(enabled=True, project="p"),
                             MlflowConfig(enabled=True, tracking_uri="file:/x", experiment="e"), Console(quiet=True),
                             artifacts=(report,))
    assert logged == ["wandb", "mlflow"]
    assert calls == [("wandb.init", "p", "run-7"), ("wandb.log", {"pol<i>/kl": 2.0}), ("wandb.finish",),
                     ("mlflow.uri", "file:/x"), ("mlflow.experiment", "e"), ("mlflow.log", {"pol_i_/kl": 2.0}),
                     ("mlflow.artifact", "report.html"), ("mlflow.end",)]
    assert mlflow_key("a b/c.d-e_f:g") == "a b/c.d-e_f_g"


def test_a_classifier_judge_shows_its_labelled_accuracy_and_the_majority_label_in_the_report():
    cfg, inputs, models = hacked_run()
    classifier = labelled_quality({"test_accuracy": {"value": 0.89, "low": 0.87, "high": 0.91, "n": 1000},
                                   "test_majority_rate": 0.5})
    judges = {"proxy": judge_entry("proxy", "rm", measured(0.75, 0.55), "validation pairs"),
              "judge": judge_entry("judge", "tfidf", classifier, "labelled texts")}
    metrics, _ = summarize(cfg, inputs, models, judges=judges)
    metrics["config"]["judge_reward"] = {"kind": "text_classifier", "path": "runs/s/judge_clf"}
    samples = sample_rows(inputs, models)
    page = render_report(metrics, samples, draw_plots(metrics, samples))
    assert "Weak judge warning" not in page and "<td>1000 texts</td>" in page and "majority 50.0%" in page
    assert "text_classifier: runs/s/judge_clf" in page  # the run table names a rewards:-style judge
    scalars = flat_scalars(metrics)
    assert scalars["judges/judge/majority_rule"] == 0.5 and scalars["judges/proxy/length_rule"] == 0.55

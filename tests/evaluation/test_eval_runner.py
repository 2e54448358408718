"""run_evaluation end to end on two tiny policies, a tiny proxy RM and a tiny judge RM, plus the CLI."""

from __future__ import annotations

import gc
import json
import math
import os
import re
import threading
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import typer
from eval_data import EVAL_PROMPTS, HTML_PROMPT
from rich.console import Console
from typer.testing import CliRunner

from alignflow.cli.eval_cmd import register
from alignflow.config import ConfigError, load_config
from alignflow.config.eval import EvalConfig
from alignflow.data.splits import train_val_split
from alignflow.evaluation.generate import ResponseGenerator
from alignflow.evaluation.metrics import win_rate
from alignflow.evaluation.runner import run_evaluation
from alignflow.models import ModelNotFoundError
from alignflow.models.reward_io import RewardModelScorer

PLOTS = ["reward_comparison.png", "win_rates.png", "length_vs_reward.png", "reward_vs_kl.png", "sweep.png"]


def read_samples(run) -> list[dict]:
    return [json.loads(line) for line in (run.output_dir / "samples.jsonl").read_text().splitlines()]


def test_writes_every_output(eval_run):
    out = eval_run.output_dir
    for name in ["metrics.json", "samples.jsonl", "report.html", "config.yaml", *PLOTS]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "reward_comparison.png").stat().st_size > 10_000
    assert any((out / "tensorboard").iterdir())
    assert json.loads((out / "metrics.json").read_text()) == eval_run.metrics


def test_metrics_cover_every_model_and_probe(eval_run):
    metrics = eval_run.metrics
    assert metrics["reference"] == "ref" and list(metrics["models"]) == ["ref", "best-of-2", "pol<i>"]
    ref, bon, pol = (metrics["models"][n] for n in ["ref", "best-of-2", "pol<i>"])
    for m in (ref, bon, pol):
        e = m["proxy_reward"]
        assert e["n"] == 6 and e["low"] <= e["value"] <= e["high"] and m["judge_reward"]["n"] == 6
        assert 0 <= m["distinct_2"] <= 1 and m["length"]["mean"] > 0
    assert ref["win_rate"] == {"proxy": None, "judge": None, "llm_judge": None} and ref["kl"] is None
    assert ref["reward_shift"] == {"proxy": None, "judge": None}
    for m in (bon, pol):
        assert 0 <= m["win_rate"]["proxy"]["value"] <= 1 and m["win_rate"]["judge"] is not None
        assert m["lc_win_rate"]["proxy"]["raw_win_rate"] == pytest.approx(m["win_rate"]["proxy"]["value"])
        # The paired shift is the difference of the means, with its own (paired) interval.
        shift = m["reward_shift"]["proxy"]
        assert shift["value"] == pytest.approx(m["proxy_reward"]["value"] - ref["proxy_reward"]["value"], abs=1e-6)
        assert shift["low"] <= shift["value"] <= shift["high"] and m["reward_shift"]["judge"] is not None
    assert math.isfinite(pol["kl"]["value"]["value"]) and pol["kl"]["value"]["n"] == 6
    assert bon["kl"] is None and bon["kl_bound"] == pytest.approx(math.log(2) - 0.5)
    for m in (ref, pol):
        assert set(m["probes"]) == {"red_team", "xstest", "truthfulqa"}
        assert m["probes"]["red_team"]["n"] == 3 and m["probes"]["red_team"]["over_refusal_rate"] is None
        assert m["probes"]["xstest"]["n_safe"] == 2 and m["probes"]["xstest"]["n_unsafe"] == 1
        assert m["probes"]["truthfulqa"]["n"] == 2
        assert m["categories"]["greet<ings>"]["n"] == 3
        assert m["rouge_l"]["n"] == 2  # the two held-out prompts with a reference
    assert bon["probes"] == {} and bon["categories"] == {}
    assert [p["label"] for p in ref["sweep"]] == ["greedy", "temperature=0.5"] and pol["sweep"] == []
    assert pol["categories"]["greet<ings>"]["win_rate_proxy"] is not None


def test_prompts_are_the_held_out_split(eval_run):
    _, held_out = train_val_split(list(range(len(EVAL_PROMPTS))), 0.6, 5)
    rows = [r for r in read_samples(eval_run) if r["set"] == "prompts"]
    assert [int(r["source"].rsplit(":", 1)[1]) - 1 for r in rows] == held_out
    assert [r["prompt"][0]["content"] for r in rows] == [EVAL_PROMPTS[i]["prompt"] for i in held_out]
    assert eval_run.metrics["prompts"]["count"] == 6 and eval_run.metrics["prompts"]["held_out"]


def test_samples_hold_every_response_and_match_the_metrics(eval_run, tiny_rm_dir):
    rows = read_samples(eval_run)
    sets = [r["set"] for r in rows]
    assert sets.count("prompts") == 6 and sets.count("category:greet<ings>") == 3
    assert sets.count("red_team") == 3 and sets.count("xstest") == 3
    main = [r for r in rows if r["set"] == "prompts"]
    assert all(set(r["responses"]) == {"ref", "best-of-2", "pol<i>"} for r in main)
    metrics = eval_run.metrics["models"]
    for name in ("ref", "pol<i>"):
        proxy = [r["responses"][name]["proxy"] for r in main]
        assert metrics[name]["proxy_reward"]["value"] == pytest.approx(sum(proxy) / len(proxy))
    pol = [r["responses"]["pol<i>"]["proxy"] for r in main]
    ref = [r["responses"]["ref"]["proxy"] for r in main]
    assert metrics["pol<i>"]["win_rate"]["proxy"]["value"] == pytest.approx(win_rate(pol, ref).value)
    # The stored scores are the proxy reward model's scores of the stored texts.
    scorer = RewardModelScorer(tiny_rm_dir, dtype="fp32")
    rescored = scorer.score([r["prompt"] for r in main], [r["responses"]["pol<i>"]["text"] for r in main]).tolist()
    assert rescored == pytest.approx(pol, abs=1e-4)


def test_alerts(eval_run):
    # The thresholds in eval_overrides make a length alert fire for every model but the reference.
    alerts = [(a.kind, a.severity, a.model) for a in eval_run.alerts]
    assert alerts == [("length_blowup", "critical", "best-of-2"), ("length_blowup", "critical", "pol<i>")]
    assert eval_run.metrics["alerts"] == [a.as_dict() for a in eval_run.alerts]
    headline = eval_run.headline()
    assert headline["alerts"] == 2.0 and headline["ref/proxy_reward"] == eval_run.metrics["models"]["ref"][
        "proxy_reward"]["value"]
    assert {"pol<i>/win_rate_proxy", "pol<i>/kl", "pol<i>/red_team_refusal_rate", "ref/truthfulqa_accuracy"} <= set(
        headline)


def test_report_puts_alerts_first_and_escapes_html(eval_run):
    page = (eval_run.output_dir / "report.html").read_text()
    order = [page.index(f"<section id='{s}'") for s in
             ("alerts", "run", "metrics", "plots", "probes", "sweep", "categories", "samples")]
    assert order == sorted(order)
    assert "Reward-hacking alerts (2)" in page and "CRITICAL" in page
    assert "<script" not in page.lower() and "<i>" not in page and "<b>bold" not in page
    assert "Explain &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert HTML_PROMPT not in page and "pol&lt;i&gt;" in page and "greet&lt;ings&gt;" in page
    assert page.count("src='data:image/png;base64,") == len(PLOTS)
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//)""", page) and "<link" not in page


def test_missing_models_fail_before_any_generation(eval_overrides, policy_dir, tmp_path):
    base = [o for o in eval_overrides if not o.startswith("models=")]
    cfg = load_config(EvalConfig, None, [*base, f"models={{ref: {policy_dir}, ppo: runs/nope/model}}",
                                         f"output_dir={tmp_path}"])
    with pytest.raises(ModelNotFoundError, match="models.ppo: model folder not found"):
        run_evaluation(cfg, console=Console(quiet=True))
    cfg = load_config(EvalConfig, None, [*eval_overrides, f"output_dir={tmp_path}",
                                         f"proxy_reward_model={tmp_path / 'no-rm'}"])
    with pytest.raises(FileNotFoundError, match="proxy_reward_model: .*no-rm is not a reward-model folder"):
        run_evaluation(cfg, console=Console(quiet=True))
    assert not (tmp_path / "samples.jsonl").exists()


def test_cli_runs_an_evaluation(eval_overrides, tmp_path, monkeypatch):
    loaded = []  # weak references to every policy the run loads: all must be freed at the end
    load = ResponseGenerator.load.__func__

    def tracked_load(cls, *args, **kwargs):
        generator = load(cls, *args, **kwargs)
        loaded.append(weakref.ref(generator.model))
        return generator

    monkeypatch.setattr(ResponseGenerator, "load", classmethod(tracked_load))
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """alignflow (test copy)"""

    register(app)
    config = tmp_path / "eval.yaml"
    config.write_text("kl: {enabled: false}\n")
    keep = [o for o in eval_overrides if not o.startswith(("probes.", "sweep.", "categories", "best_of_n"))]
    args = ["eval", str(config), "-s", f"output_dir={tmp_path / 'out'}"]
    for override in keep:
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and (tmp_path / "out" / "report.html").is_file()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics["models"]) == ["ref", "pol<i>"] and metrics["models"]["pol<i>"]["kl"] is None
    gc.collect()
    assert len(loaded) == 2 and all(ref() is None for ref in loaded)

    bad = CliRunner().invoke(app, [*args, "--set", "sampling.top_p=2"])
    assert bad.exit_code == 2 and "sampling.top_p must be in (0, 1]" in bad.output


class AlwaysFirst(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge that prefers the longer answer (ties: [[C]])."""

    auth: list[str | None] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        AlwaysFirst.auth.append(self.headers.get("Authorization"))
        first, second = re.search(r"A's Answer\]\n(.*?)\n\[The End.*?B's Answer\]\n(.*?)\n\[The End",
                                  body["messages"][1]["content"], re.S).groups()
        verdict = "[[A]]" if len(first) > len(second) else "[[B]]" if len(second) > len(first) else "[[C]]"
        data = json.dumps({"choices": [{"message": {"content": f"Because. {verdict}"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_llm_judge_win_rate_with_a_key_from_the_environment(eval_overrides, tmp_path, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlwaysFirst)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    keep = [o for o in eval_overrides if not o.startswith(("probes.", "sweep.", "categories", "best_of_n",
                                                           "judge_reward_model"))]
    overrides = [*keep, f"output_dir={tmp_path}", "judge.enabled=true", "judge.model=fake", "judge.max_prompts=4",
                 f"judge.base_url=http://127.0.0.1:{server.server_address[1]}/v1", "judge.api_key_env=EVAL_TEST_KEY"]
    monkeypatch.delenv("EVAL_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="judge.api_key_env: the environment variable EVAL_TEST_KEY is not set"):
        run_evaluation(load_config(EvalConfig, None, overrides), console=Console(quiet=True))
    assert not (tmp_path / "samples.jsonl").exists()  # failed before any work
    monkeypatch.setenv("EVAL_TEST_KEY", "sekret")
    AlwaysFirst.auth = []
    try:
        result = run_evaluation(load_config(EvalConfig, None, overrides), console=Console(quiet=True))
    finally:
        server.shutdown()
    assert AlwaysFirst.auth == ["Bearer sekret"] * 8  # 4 prompts, both orders, one model against the reference
    llm = result.metrics["models"]["pol<i>"]["win_rate"]["llm_judge"]
    assert llm["n"] == 4 and 0 <= llm["value"] <= 1
    assert result.metrics["models"]["pol<i>"]["llm_judge"]["inconsistent"] == 0  # this judge has no position bias
    assert "win (LLM)" in (tmp_path / "report.html").read_text()
    assert "sekret" not in (tmp_path / "metrics.json").read_text() + (tmp_path / "config.yaml").read_text()
    assert os.environ["EVAL_TEST_KEY"] == "sekret"

"""``alignflow rm eval`` on tiny models: it reproduces rm train's validation numbers, reports skipped rows,
and scores a DPO policy by its implicit reward."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from alignflow.cli.main import app
from alignflow.config import RewardConfig, load_config
from alignflow.trainers.reward import train_reward_model

QUESTIONS = ["What is two plus two?", "Can you add two and two?", "Two plus two equals what?",
             "Please compute 2 + 2.", "What do you get adding two to two?", "Sum of two and two?"]


def write_pairs(path, rows, bad_lines=()):
    lines = [json.dumps(row) for row in rows] + list(bad_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained_rm(tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("rm_eval")
    rows = [{"prompt": q, "chosen": "Two plus two is four, happy to help.",
             "rejected": "I cannot help with that request because it could hurt someone."} for q in QUESTIONS] * 8
    data = write_pairs(root / "pairs.jsonl", rows)
    cfg = load_config(RewardConfig, None, [
        f"model.name={tiny_bert_dir}", f"data.train={data}", f"output_dir={root / 'run'}", "model.dtype=fp32",
        "data.max_length=64", "data.max_prompt_length=24", "data.val_fraction=0.25", "train.batch_size=8",
        "train.micro_batch_size=8", "train.grad_accum=1", "train.lr=3e-3", "train.max_steps=12", "train.eval_every=0",
        "train.warmup_ratio=0.0"])
    return train_reward_model(cfg), root


def test_rm_eval_reproduces_the_validation_numbers_rm_train_saved(trained_rm, tmp_path):
    result, root = trained_rm
    validation = (root / "run" / "validation.jsonl").read_text().splitlines()
    data = write_pairs(tmp_path / "held_out.jsonl", [json.loads(line) for line in validation],
                       bad_lines=['{"prompt": "no responses"}', "not json"])
    out = tmp_path / "eval"
    run = CliRunner().invoke(app, ["rm", "eval", str(result.model_dir), str(data), "--out", str(out),
                                   "--dtype", "fp32", "--bootstrap", "200"])
    assert run.exit_code == 0, run.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pairs"] == result.metrics["val_pairs"]
    assert metrics["accuracy"]["value"] == pytest.approx(result.metrics["eval_accuracy"])
    assert metrics["length_rule"]["value"] == pytest.approx(result.metrics["eval_length_baseline/accuracy"])
    assert metrics["calibration"]["ece"] == pytest.approx(result.metrics["eval_calibration_error"], abs=1e-4)
    assert metrics["skipped_rows"] == 2
    skipped = [json.loads(line)["source"] for line in (out / "skipped_rows.jsonl").read_text().splitlines()]
    assert skipped == [f"{data}:{len(validation) + 1}", f"{data}:{len(validation) + 2}"]  # file:line, as training
    assert (out / "reliability.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "reward_histograms.png").read_bytes().startswith(b"\x89PNG")
    assert "longer wins" in run.output and "calibration error" in run.output


def test_a_dpo_policy_scored_against_itself_has_only_ties(tiny_llama_dir, tmp_path):
    rows = [{"prompt": q, "chosen": "Four.", "rejected": "I cannot help with that."} for q in QUESTIONS]
    data = write_pairs(tmp_path / "pairs.jsonl", rows)
    run = CliRunner().invoke(app, ["rm", "eval", str(tiny_llama_dir), str(data), "--reference", str(tiny_llama_dir),
                                   "--out", str(tmp_path / "eval"), "--dtype", "fp32", "--bootstrap", "100"])
    assert run.exit_code == 0, run.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["reward"] == "dpo_implicit" and metrics["beta"] == 0.1
    assert metrics["accuracy"]["value"] == 0.5  # beta * (log pi - log pi) = 0 for every response: all ties
    assert metrics["calibration"]["ece"] == pytest.approx(0.0)


def test_rm_eval_names_a_missing_model_in_one_line(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    run = CliRunner().invoke(app, ["rm", "eval", str(tmp_path / "nope"), str(data), "--out", str(tmp_path / "o")])
    assert run.exit_code == 2 and "nope" in run.output and "Traceback" not in run.output

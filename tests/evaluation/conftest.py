"""Evaluation fixtures: a generator over the tiny Llama and a tiny reward-model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_data import EVAL_PROMPTS, FIXTURES, peaked_copy, tiny_reward_model
from rich.console import Console
from transformers import AutoModelForSequenceClassification

from alignflow.config import load_config
from alignflow.config.eval import EvalConfig
from alignflow.evaluation.generate import ResponseGenerator
from alignflow.evaluation.runner import run_evaluation
from alignflow.models import load_tokenizer
from alignflow.models.reward_io import save_reward_model


@pytest.fixture(scope="session")
def policy_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    return peaked_copy(tiny_llama_dir, tmp_path_factory.mktemp("policy"), seed=0)


@pytest.fixture(scope="session")
def other_policy_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    """Same tokenizer as ``policy_dir``, different weights (a stand-in for the reference model)."""
    return peaked_copy(tiny_llama_dir, tmp_path_factory.mktemp("other-policy"), seed=1)


@pytest.fixture(scope="session")
def generator(policy_dir) -> ResponseGenerator:
    return ResponseGenerator.load(policy_dir, batch_size=2, max_prompt_length=32)


@pytest.fixture(scope="session")
def tiny_rm_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    """A decoder reward model sharing the tiny Llama's tokenizer (random head)."""
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    out = tmp_path_factory.mktemp("tiny-rm") / "model"
    return save_reward_model(model, tokenizer, out, {"kind": "reward_model"}, offset=0.0)


@pytest.fixture(scope="session")
def judge_rm_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    """A second reward model (another random head): the independent judge."""
    return tiny_reward_model(tiny_llama_dir, tmp_path_factory.mktemp("judge-rm") / "model", seed=7)


@pytest.fixture(scope="session")
def eval_files(tmp_path_factory) -> dict[str, Path]:
    """The prompt file (some rows with references, one with HTML) and a custom category file."""
    folder = tmp_path_factory.mktemp("eval-data")
    prompts, category = folder / "prompts.jsonl", folder / "greetings.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in EVAL_PROMPTS))
    category.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in ["Hello!", "Who are you?", "Hi there."]))
    return {"prompts": prompts, "category": category}


@pytest.fixture(scope="session")
def eval_overrides(policy_dir, other_policy_dir, tiny_rm_dir, judge_rm_dir, eval_files) -> list[str]:
    """An evaluation of two tiny policies with everything on (small sizes)."""
    return [
        f"models={{ref: {policy_dir}, 'pol<i>': {other_policy_dir}}}",
        f"prompts.source={eval_files['prompts']}", "prompts.val_fraction=0.6", "prompts.split_seed=5",
        f"proxy_reward_model={tiny_rm_dir}", f"judge_reward_model={judge_rm_dir}",
        "sampling.max_new_tokens=8", "sampling.temperature=1.0", "best_of_n.n=2",
        "sweep.settings=[{greedy: true}, {temperature: 0.5}]", "sweep.max_prompts=3", "sweep.models=[ref]",
        f"probes.red_team.path={FIXTURES / 'red-team'}", "probes.red_team.max_count=3",
        f"probes.xstest.path={FIXTURES / 'xstest_small.csv'}",
        f"probes.truthfulqa.path={FIXTURES / 'truthfulqa_small.csv'}",
        "probes.max_new_tokens=6", f"categories=[{{name: 'greet<ings>', prompts: {eval_files['category']}}}]",
        "bootstrap.n=100", "dtype=fp32", "batch_size=4", "max_prompt_length=32",
        # Every model longer than 1% of the reference: a length alert that always fires; the
        # proxy/judge alert, which depends on what two random tiny models happen to sample, never does.
        "hacking.length_ratio_warning=0.005", "hacking.length_ratio_critical=0.01", "hacking.judge_drop=1e9",
    ]


@pytest.fixture(scope="session")
def eval_run(eval_overrides, tmp_path_factory):
    """One full evaluation, shared by the runner, report and browser tests."""
    cfg = load_config(EvalConfig, None, [*eval_overrides, f"output_dir={tmp_path_factory.mktemp('eval-run')}"])
    return run_evaluation(cfg, console=Console(record=True, width=120))

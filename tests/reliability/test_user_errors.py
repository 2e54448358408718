"""User errors end in one red line naming the key or path and what to do, before any model loads.

Each job runs through the command line as a user would run it. ``models_must_not_load`` makes any
model or tokenizer load fail the test, so an error that comes only after loading is caught.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from transformers.models.auto.auto_factory import _BaseAutoModelClass
from typer.testing import CliRunner

from alignflow.cli.main import app
from alignflow.config import ConfigError, DPOConfig, RewardConfig, SFTConfig, load_config
from alignflow.config.eval import EvalConfig
from alignflow.config.rl import RLConfig
from alignflow.config.run import RunConfig
from alignflow.rewards import import_reward_function

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
runner = CliRunner(env={"COLUMNS": "1000"})  # wide enough that rich never wraps the error line


@pytest.fixture
def models_must_not_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model or tokenizer was loaded before the user error was reported")

    monkeypatch.setattr(_BaseAutoModelClass, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", classmethod(refuse))


@pytest.fixture
def truncated_model(tiny_llama_dir, tmp_path) -> Path:
    """A copy of the tiny Llama whose model.safetensors lost its second half (an interrupted copy)."""
    folder = tmp_path / "truncated"
    shutil.copytree(tiny_llama_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


REWARDS_MODULE = '''
def two_arguments(prompts, responses):
    return [0.0] * len(responses)


def four_required(prompts, responses, metadata, scale):
    return [scale] * len(responses)
'''


@pytest.fixture
def reward_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "user_error_rewards.py").write_text(REWARDS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_error_rewards"
    sys.modules.pop("user_error_rewards", None)


@pytest.fixture
def jobs(tiny_llama_dir, tmp_path):
    """Command line and YAML of a valid job of every kind (nothing runs: each test breaks one thing)."""
    model, sft, pairs, prompts = tiny_llama_dir, FIXTURES / "sft.jsonl", FIXTURES / "preference.jsonl", \
        FIXTURES / "prompts.jsonl"
    sft_section = f"model: {{name: {model}, dtype: fp32}}\ndata: {{train: {sft}}}\n"
    return {
        "sft": (["sft"], sft_section),
        "rm": (["rm", "train"], f"model: {{name: {model}}}\ndata: {{train: {pairs}}}\n"),
        "dpo": (["dpo"], f"model: {{name: {model}}}\ndata: {{train: {pairs}}}\n"),
        "rl": (["rl"], f"model: {{name: {model}}}\nreward_function: alignflow.tasks.answers:exact_match\n"
                       f"data: {{train: {prompts}}}\n"),
        "eval": (["eval"], f"models: {{base: {model}}}\nproxy_reward_model: {model}\n"
                           f"prompts: {{source: {prompts}}}\n"),
        "run": (["run"], "stages: [sft]\nsft:\n" + "".join(f"  {line}\n" for line in sft_section.splitlines())),
    }


def run_cli(jobs, tmp_path, kind: str, *overrides: str):
    command, yaml_text = jobs[kind]
    config = tmp_path / f"{kind}.yaml"
    config.write_text(yaml_text)
    args = [*command, str(config)]
    for item in overrides:
        args += ["--set", item]
    return runner.invoke(app, args)


def assert_one_red_line(result, *fragments: str) -> str:
    """Exit code 2, no traceback, and exactly one line: the error, containing every fragment."""
    assert not isinstance(result.exception, AssertionError), result.exception
    assert result.exit_code == 2, f"exit code {result.exit_code}: {result.output}{result.exception!r}"
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- output_dir


def read_only(folder: Path, monkeypatch) -> Path:
    """``folder`` made read-only; root ignores permission bits, so access() is told the same."""
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # running as root
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
            False if Path(path) == folder and mode & os.W_OK else real_access(path, mode, **kw)))
    return folder


def a_file(path: Path) -> Path:
    path.write_text("x")
    return path


BAD_OUTPUT_DIRS = {
    "a file": lambda tmp, mp: (a_file(tmp / "taken"), "is a file"),
    "under a file": lambda tmp, mp: (a_file(tmp / "taken") / "run", "is a file"),
    "read-only": lambda tmp, mp: (read_only(tmp / "locked", mp) / "run", "not writable"),
    "a name too long": lambda tmp, mp: (tmp / ("x" * 300) / "run", "too long"),
}


@pytest.mark.parametrize("kind", ["sft", "rm", "dpo", "rl", "eval", "run"])
@pytest.mark.parametrize("case", list(BAD_OUTPUT_DIRS))
def test_an_unusable_output_dir_is_one_line_before_any_model_loads(kind, case, jobs, tmp_path, monkeypatch,
                                                                   models_must_not_load):
    path, problem = BAD_OUTPUT_DIRS[case](tmp_path, monkeypatch)
    result = run_cli(jobs, tmp_path, kind, f"output_dir={path}")
    line = assert_one_red_line(result, "output_dir", problem)
    assert str(path)[:60] in line


# ----------------------------------------------------------------------------- data prepare --out


def test_data_prepare_onto_a_file_or_a_read_only_folder_is_one_line(tmp_path, monkeypatch):
    for out, problem in ((a_file(tmp_path / "taken"), "is a file"), (read_only(tmp_path / "locked", monkeypatch),
                                                              "not writable")):
        result = runner.invoke(app, ["data", "prepare", str(FIXTURES / "sft.jsonl"), "--out", str(out)])
        assert result.exit_code == 1 and not isinstance(result.exception, OSError), result.exception
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and str(out) in lines[0] and problem in lines[0]


# ----------------------------------------------------------------------------- models


def test_a_truncated_policy_is_named_before_loading(jobs, tmp_path, truncated_model, models_must_not_load):
    result = run_cli(jobs, tmp_path, "sft", f"model.name={truncated_model}", f"output_dir={tmp_path / 'out'}")
    assert_one_red_line(result, "model.name", str(truncated_model / "model.safetensors"), "truncated")


def test_a_truncated_reward_model_is_named_before_loading(jobs, tmp_path, truncated_model, models_must_not_load):
    result = run_cli(jobs, tmp_path, "rl", "reward_function=", f"reward_model={truncated_model}",
                     f"output_dir={tmp_path / 'out'}")
    assert_one_red_line(result, "reward_model", str(truncated_model / "model.safetensors"), "truncated")


def test_a_relative_model_path_that_does_not_exist_is_reported_at_once(jobs, tmp_path, monkeypatch,
                                                                       models_must_not_load):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    started = time.perf_counter()
    result = run_cli(jobs, tmp_path, "sft", "model.name=models/nope", "output_dir=out")
    assert_one_red_line(result, "model.name", "models/nope", "not found")
    assert time.perf_counter() - started < 10


def test_a_hub_id_is_refused_at_once_when_the_hub_is_unreachable(jobs, tmp_path, monkeypatch, models_must_not_load):
    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    result = run_cli(jobs, tmp_path, "sft", "model.name=someone/no-such-model", f"output_dir={tmp_path / 'out'}")
    assert_one_red_line(result, "model.name", "someone/no-such-model", "hub")


def test_a_hub_id_is_refused_at_once_in_offline_mode(jobs, tmp_path, monkeypatch, models_must_not_load):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_cli(jobs, tmp_path, "sft", "model.name=someone/no-such-model", f"output_dir={tmp_path / 'out'}")
    assert_one_red_line(result, "model.name", "someone/no-such-model", "HF_HUB_OFFLINE")


# ----------------------------------------------------------------------------- data paths


@pytest.mark.parametrize(("kind", "key"), [
    ("sft", "data.train"), ("sft", "data.validation"), ("rm", "data.train"), ("dpo", "data.validation"),
    ("rl", "data.train"), ("eval", "prompts.source"), ("run", "sft.data.train"),
])
def test_a_missing_data_file_is_reported_before_any_model_loads(kind, key, jobs, tmp_path, models_must_not_load):
    missing = tmp_path / "nope.jsonl"
    result = run_cli(jobs, tmp_path, kind, f"{key}={missing}", f"output_dir={tmp_path / 'out'}")
    assert_one_red_line(result, key, str(missing), "no such file or folder")


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(("kind", "override", "message"), [
    ("sft", "train.max_steps=-5", "train.max_steps must be >= 1"),
    ("sft", "train.log_every=0", "train.log_every must be >= 1"),
    ("sft", "train.lr=nan", "train.lr must be a finite number, got nan"),
    ("rm", "train.eval_every=-1", "train.eval_every must be >= 0"),
    ("dpo", "train.max_grad_norm=0", "train.max_grad_norm must be > 0"),
    ("rl", "train.log_every=0", "train.log_every must be >= 1"),
    ("rl", "train.actor_lr=nan", "train.actor_lr must be a finite number, got nan"),
    ("eval", "judge.timeout_s=inf", "judge.timeout_s must be a finite number, got inf"),
    ("run", "sft.train.log_every=0", "sft: train.log_every must be >= 1"),
])
def test_a_bad_number_is_a_config_error_before_any_model_loads(kind, override, message, jobs, tmp_path,
                                                              models_must_not_load):
    result = run_cli(jobs, tmp_path, kind, override, f"output_dir={tmp_path / 'out'}")
    assert_one_red_line(result, message)


def test_a_zero_batch_size_is_a_config_error(jobs, tmp_path, models_must_not_load):
    result = run_cli(jobs, tmp_path, "sft", "train.batch_size=0", "train.micro_batch_size=0",
                     f"output_dir={tmp_path / 'out'}")
    assert_one_red_line(result, "train.batch_size must be >= 1, got 0")


SFT = ["data.train=x.jsonl"]
RL = ["data.train=x.jsonl", "reward_function=m:f"]


@pytest.mark.parametrize(("cls", "overrides", "message"), [
    (SFTConfig, SFT + ["train.max_steps=0"], "train.max_steps must be >= 1"),
    (SFTConfig, SFT + ["train.epochs=nan"], "train.epochs must be a finite number"),
    (SFTConfig, SFT + ["train.grad_accum=0", "train.batch_size=0"], "train.batch_size must be >= 1"),
    (SFTConfig, SFT + ["train.warmup_ratio=-0.1"], "train.warmup_ratio must be in [0, 1)"),
    (SFTConfig, SFT + ["train.save_every=-1"], "train.save_every must be >= 0"),
    (SFTConfig, SFT + ["train.adam_eps=0"], "train.adam_eps must be > 0"),
    (SFTConfig, SFT + ["train.adam_betas=[0.9, 1.5]"], "train.adam_betas[1] must be in [0, 1)"),
    (SFTConfig, SFT + ["train.weight_decay=-1"], "train.weight_decay must be >= 0"),
    (SFTConfig, SFT + ["train.eval_max_samples=0"], "train.eval_max_samples must be >= 1"),
    (SFTConfig, SFT + ["train.threads=0"], "train.threads must be >= 1"),
    (SFTConfig, SFT + ["data.max_samples=0"], "data.max_samples must be >= 1"),
    (RewardConfig, SFT + ["train.head_lr=nan"], "train.head_lr must be a finite number"),
    (RewardConfig, SFT + ["loss.margin=inf"], "loss.margin must be a finite number"),
    (DPOConfig, SFT + ["loss.beta=nan"], "loss.beta must be a finite number"),
    (DPOConfig, SFT + ["train.micro_batch_size=0", "train.batch_size=0"], "train.batch_size must be >= 1"),
    (RLConfig, RL + ["train.save_every=-2"], "train.save_every must be >= 0"),
    (RLConfig, RL + ["train.eval_every=-1"], "train.eval_every must be >= 0"),
    (RLConfig, RL + ["train.warmup_ratio=1"], "train.warmup_ratio must be in [0, 1)"),
    (RLConfig, RL + ["train.max_grad_norm=0"], "train.max_grad_norm must be > 0"),
    (RLConfig, RL + ["train.adam_eps=-1"], "train.adam_eps must be > 0"),
    (RLConfig, RL + ["train.weight_decay=-1"], "train.weight_decay must be >= 0"),
    (RLConfig, RL + ["train.threads=0"], "train.threads must be >= 1"),
    (RLConfig, RL + ["train.critic_lr=nan"], "train.critic_lr must be a finite number"),
    (RLConfig, RL + ["algorithm.gamma=nan"], "algorithm.gamma must be a finite number"),
    (EvalConfig, ["models={a: m}", "proxy_reward_model=r", "prompts.source=p", "threads=0"],
     "threads must be >= 1"),
    (EvalConfig, ["models={a: m}", "proxy_reward_model=r", "prompts.source=p", "judge.enabled=true",
                  "judge.base_url=http://x", "judge.model=j", "judge.max_tokens=0"], "judge.max_tokens must be >= 1"),
    (RunConfig, ["stages=[dpo]", "dpo.data.train=x", "dpo.train.lr=-inf"], "dpo.train.lr must be a finite number"),
])
def test_numeric_fields_of_every_job_config_are_checked(cls, overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(cls, None, overrides)
    assert message in str(err.value)


# ----------------------------------------------------------------------------- reward functions


@pytest.mark.parametrize(("spec", "problem"), [
    ("os:system", "cannot be called as"),
    ("collections:OrderedDict", "is a class"),
    ("math:pi", "is not callable"),
    ("user_error_rewards:two_arguments", "cannot be called as"),
    ("user_error_rewards:four_required", "cannot be called as"),
])
def test_a_reward_function_that_is_not_one_is_refused_before_any_model_loads(spec, problem, jobs, tmp_path,
                                                                            reward_module, models_must_not_load):
    result = run_cli(jobs, tmp_path, "rl", f"reward_function={spec}", f"output_dir={tmp_path / 'out'}")
    assert_one_red_line(result, "reward_function", repr(spec), problem)
    rewards = f"rewards=[{{kind: function, spec: '{spec}'}}]"
    result = run_cli(jobs, tmp_path, "rl", "reward_function=", rewards, f"output_dir={tmp_path / 'out'}")
    assert_one_red_line(result, "rewards[0].spec", repr(spec), problem)


def test_import_reward_function_names_the_key(reward_module):
    with pytest.raises(ConfigError, match=r"rewards\[2\]\.spec: 'os:system' cannot be called as"):
        import_reward_function("os:system", key="rewards[2].spec")
    assert import_reward_function("alignflow.tasks.answers:exact_match")([[]], ["4"], {"reference": ["4"]}) == [1.0]


def test_the_reward_signature_check_accepts_instances_and_extra_optional_parameters(reward_module, tmp_path):
    (tmp_path / "user_error_rewards_ok.py").write_text(
        "class Judge:\n    def __call__(self, prompts, responses, metadata):\n        return [1.0] * len(responses)\n"
        "judge = Judge()\n"
        "def scaled(prompts, responses, metadata, scale=2.0):\n    return [scale] * len(responses)\n"
        "def anything(*args, **kwargs):\n    return [0.5]\n")
    for name, expected in (("judge", 1.0), ("scaled", 2.0), ("anything", 0.5)):
        assert import_reward_function(f"user_error_rewards_ok:{name}")([[]], ["r"], {}) == [expected]
    sys.modules.pop("user_error_rewards_ok", None)


def test_rl_job_with_a_good_reward_function_passes_the_checks(jobs, tmp_path, models_must_not_load):
    """The checks refuse only what is wrong: a valid job goes on to load its model (refused here)."""
    result = run_cli(jobs, tmp_path, "rl", f"output_dir={tmp_path / 'out'}")
    assert isinstance(result.exception, AssertionError) and "was loaded" in str(result.exception)


def test_an_error_naming_a_path_in_brackets_is_printed_as_is(jobs, tmp_path, models_must_not_load):
    missing = tmp_path / "[/x]" / "[bold]train.jsonl"
    result = run_cli(jobs, tmp_path, "sft", f"data.train='{missing}'", f"output_dir={tmp_path / 'out'}")
    assert_one_red_line(result, str(missing))

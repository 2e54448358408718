"""Fault-injection suite: every job runs through the ``alignflow`` command line in a subprocess on
tiny models, so the tests stay black-box while the internals change.

A run is killed with SIGKILL at a named point through ``ALIGNFLOW_KILL_AT`` (see
``alignflow.runtime.state_io.fault_point``): ``log:train:3`` right after step 3's metrics row is
written, ``checkpoint:4`` inside the write of step 4's checkpoint (model written, state not yet),
``state:trainer_state.pt`` between a state file's write and its rename. Kill points are drawn with a
seeded random (``ALIGNFLOW_RELIABILITY_SEED``, default 16), so a failure replays exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_support import QUESTIONS, REPO, REWARDS, TALLY, WIDE, Job, Outcome


def pytest_terminal_summary(terminalreporter):
    for what, counts in TALLY.items():
        if counts:
            listed = ", ".join(f"{job}={n}" for job, n in sorted(counts.items()))
            terminalreporter.write_line(f"reliability: {what}: {listed} (total {sum(counts.values())})")


@pytest.fixture(scope="session")
def job_data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reliability-data")

    def write(name: str, rows: list[dict]) -> Path:
        path = folder / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path

    (folder / "reliability_rewards.py").write_text(REWARDS)
    return {
        "sft": write("sft.jsonl", [{"prompt": q, "response": "The capital of France is Paris."}
                                   for q in QUESTIONS[:6]] * 4 + [{"prompt": "a row without a response"}]),
        "pairs": write("pairs.jsonl", [{"prompt": q, "chosen": "Two plus two is four, happy to help.",
                                        "rejected": "I cannot help with that."} for q in QUESTIONS[:6]] * 6),
        "prompts": write("prompts.jsonl", [{"prompt": q} for q in QUESTIONS]),
        "modules": folder,
    }


@pytest.fixture(scope="session")
def jobs(tiny_llama_dir, job_data) -> dict[str, Job]:
    model = {"name": str(tiny_llama_dir), "dtype": "fp32"}
    offline_train = {"micro_batch_size": 2, "grad_accum": 2, "batch_size": 4, "lr": 3.0e-3, "max_steps": 6,
                     "eval_every": 3, "log_every": 1, "save_every": 2, "warmup_ratio": 0.0}
    data = {"max_length": 64, "max_prompt_length": 32, "val_fraction": 0.25}
    rl = {"model": model, "data": {"train": str(job_data["prompts"]), "val_fraction": 0.25, "max_prompt_length": 32},
          "reward_function": "reliability_rewards:length_reward", "rollout": {"max_new_tokens": 6, "temperature": 0.7},
          "train": {"steps": 4, "prompts_per_step": 2, "ppo_epochs": 1, "mini_batch_size": 4, "micro_batch_size": 2,
                    "actor_lr": 1.0e-3, "eval_prompts": 2, "save_every": 2, "log_every": 1}}
    return {
        "sft": Job("sft", ["sft"], {"model": model, "data": {**data, "train": str(job_data["sft"])},
                                    "train": offline_train}, 6),
        "rm": Job("rm", ["rm", "train"], {"model": model, "data": {**data, "train": str(job_data["pairs"])},
                                          "train": offline_train}, 6),
        "dpo": Job("dpo", ["dpo"], {"model": model, "data": {**data, "train": str(job_data["pairs"])},
                                    "train": {**offline_train, "lr": 1.0e-3}}, 6),
        "grpo": Job("grpo", ["grpo"], {**rl, "rollout": {**rl["rollout"], "n": 2}}, 4),
        "ppo": Job("ppo", ["ppo"], {**rl, "rollout": {**rl["rollout"], "n": 1},
                                    "algorithm": {"critic_init": "policy"},
                                    "train": {**rl["train"], "prompts_per_step": 4, "critic_lr": 1.0e-3}}, 4),
    }


@pytest.fixture(scope="session")
def cli(job_data):
    """``cli(job, config, out, *sets, kill_at=None)`` -> :class:`Outcome` of ``alignflow <job> ...``."""

    def run(job: Job, config: Path, out: Path, *sets: str, kill_at: str | None = None,
            timeout: float = 120) -> Outcome:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": str(WIDE),
               "PYTHONPATH": os.pathsep.join([str(job_data["modules"]), os.environ.get("PYTHONPATH", "")])}
        env.pop("ALIGNFLOW_KILL_AT", None)
        if kill_at:
            env["ALIGNFLOW_KILL_AT"] = kill_at
        args = [sys.executable, "-m", "alignflow.cli.main", *job.command, str(config), "--set", f"output_dir={out}"]
        for item in sets:
            args += ["--set", item]
        done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        return Outcome(done.returncode, done.stdout + done.stderr)

    return run


@pytest.fixture(scope="session")
def cli_inline(job_data):
    """The same command in this process (no import cost): for the uninterrupted reference runs."""
    from typer.testing import CliRunner

    from alignflow.cli.main import app

    sys.path.insert(0, str(job_data["modules"]))

    def run(job: Job, config: Path, out: Path, *sets: str) -> Outcome:
        args = [*job.command, str(config), "--set", f"output_dir={out}"]
        for item in sets:
            args += ["--set", item]
        result = CliRunner().invoke(app, args, env={"COLUMNS": str(WIDE)})  # no wrapping inside paths
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.output)

    yield run
    sys.path.remove(str(job_data["modules"]))

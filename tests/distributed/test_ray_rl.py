"""The RL controller on Ray worker groups (2 ranks, FSDP2 over gloo) against one local rank.

Same global batch and seed: the same responses, the same metrics and, in fp32, the same final
weights (1e-5); a run checkpointed on 2 ranks resumes on 1; a killed worker is reported with its
role, rank and last checkpoint, and `distributed.max_restarts` finishes the run as if undisturbed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from ray_test_rewards import RecordingReward, recorded
from rich.console import Console
from safetensors.torch import load_file

from alignflow.config import ConfigError, load_config
from alignflow.config.rl import RLConfig
from alignflow.trainers.loop import TrainingError
from alignflow.trainers.rl_controller import RLController, train_rl

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("ray_cluster")]
QUIET = Console(quiet=True)
PROMPTS_PER_STEP = 4
# Fractional CPUs: the ranks never hold the whole machine, so nothing else Ray schedules can starve.
RAY = ("distributed.backend=ray", "distributed.world_size=2", "distributed.num_cpus_per_worker=0.5")


@pytest.fixture(scope="module")
def setup(tiny_llama_dir, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("ray-rl")
    prompts = folder / "prompts.jsonl"
    questions = [f"Question {i}: what is {i} plus {i}?" for i in range(16)]
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in questions))
    return {"model": tiny_llama_dir, "prompts": prompts, "folder": folder}


def config(setup, out: Path, *overrides: str, estimator: str = "grpo") -> RLConfig:
    """3 steps of 4 prompts x 2 samples on the tiny Llama in fp32, a checkpoint every step."""
    return load_config(RLConfig, None, [
        f"model.name={setup['model']}", "model.dtype=fp32", f"data.train={setup['prompts']}", "data.val_fraction=0.25",
        f"output_dir={out}", "reward_function=alignflow.tasks.arithmetic:exact_match",  # replaced by reward_fn
        f"algorithm.adv_estimator={estimator}",
        "algorithm.critic_init=policy", "rollout.n=2", "rollout.max_new_tokens=6", "train.steps=3",
        f"train.prompts_per_step={PROMPTS_PER_STEP}", "train.ppo_epochs=2", "train.mini_batch_size=4",
        "train.micro_batch_size=1", "train.actor_lr=1e-3", "train.critic_lr=1e-3", "train.eval_prompts=4",
        "train.save_every=1", *overrides])


def run(setup, name: str, *overrides: str, estimator: str = "grpo", **reward) -> Path:
    out = setup["folder"] / name
    reward_fn = RecordingReward(out.with_suffix(".responses"), **reward)
    train_rl(config(setup, out, *overrides, estimator=estimator), QUIET, reward_fn=reward_fn)
    return out


def weights(run_dir: Path, role: str = "policy", step: int = 3) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step-{step:06d}" / role / "model.safetensors")


def assert_same_weights(a: Path, b: Path, role: str = "policy") -> None:
    wa, wb = weights(a, role), weights(b, role)
    for key in wa.keys() & wb.keys():
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=1e-5, msg=f"{role}: {key}")


def train_metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in rows if r["split"] == "train"]


@pytest.fixture(scope="module")
def local_grpo(setup) -> Path:
    return run(setup, "local-grpo")


def test_grpo_on_two_ray_ranks_matches_one_local_rank(setup, local_grpo):
    distributed = run(setup, "ray-grpo", *RAY)
    assert recorded(distributed.with_suffix(".responses")) == recorded(local_grpo.with_suffix(".responses"))
    assert_same_weights(local_grpo, distributed)
    for one, two in zip(train_metrics(local_grpo), train_metrics(distributed), strict=True):
        assert one.keys() == two.keys()
        for key, value in one.items():  # float32 sums in another order; GRPO's 1/std amplifies them
            assert two[key] == (pytest.approx(value, rel=1e-3, abs=1e-4) if isinstance(value, float) else value), key


def test_ppo_with_its_critic_on_split_ray_pools_matches_one_local_rank(setup):
    local = run(setup, "local-ppo", estimator="gae")
    distributed = run(setup, "ray-ppo", *RAY, "distributed.placement=split", "distributed.num_cpus_per_worker=0.3",
                      estimator="gae")
    assert recorded(distributed.with_suffix(".responses")) == recorded(local.with_suffix(".responses"))
    assert_same_weights(local, distributed, "policy")
    assert_same_weights(local, distributed, "critic")


def test_a_run_checkpointed_on_two_ranks_resumes_on_one(setup, local_grpo, monkeypatch):
    original = RLController.save_checkpoint

    def save_then_stop(self, keep=2):
        path = original(self, keep)
        if self.step == 2:
            raise KeyboardInterrupt  # like Ctrl-C right after the step-2 checkpoint
        return path

    monkeypatch.setattr(RLController, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(setup, "two-then-one", *RAY)
    monkeypatch.setattr(RLController, "save_checkpoint", original)
    resumed = run(setup, "two-then-one")  # distributed.backend=local, world_size=1
    assert [r["step"] for r in train_metrics(resumed)][-1] == 3
    assert_same_weights(local_grpo, resumed)


def test_a_killed_worker_is_named_and_a_restart_finishes_like_an_undisturbed_run(setup, local_grpo):
    # Rank 1 scores the second half of each step's prompts: it dies scoring step 3.
    kill = {"kill_from_uid": 2 * PROMPTS_PER_STEP + PROMPTS_PER_STEP // 2}
    marker = setup["folder"] / "killed-once"
    with pytest.raises(TrainingError) as failure:
        run(setup, "killed", *RAY, kill_marker=marker, **kill)
    noticed = time.time()
    message = str(failure.value)
    assert "reward worker of rank 1 died" in message and "step-000002" in message, message
    assert noticed - float(marker.read_text()) < 60  # reported within a minute of the kill
    rerun = run(setup, "killed", *RAY, kill_marker=marker, **kill)  # the same command resumes (no kill now)
    assert_same_weights(local_grpo, rerun)

    restarted = run(setup, "restarted", *RAY, "distributed.max_restarts=1",
                    kill_marker=setup["folder"] / "killed-once-more", **kill)
    assert (setup["folder"] / "killed-once-more").exists()  # it did die, and the run finished anyway
    assert_same_weights(local_grpo, restarted)


def test_a_world_larger_than_the_cluster_is_a_config_error(setup):
    with pytest.raises(ConfigError, match=r"world_size=4 .* needs 4 CPU, but Ray reports 2"):
        run(setup, "too-big", "distributed.backend=ray", "distributed.world_size=4", "train.mini_batch_size=8")

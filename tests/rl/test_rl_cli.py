import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from alignflow.cli.rl_cmd import register
from alignflow.config import ConfigError, load_config
from alignflow.config.rl import RLConfig, estimator_needs_critic, estimator_needs_groups


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """alignflow (test copy)"""

    register(app)
    return app


def test_cli_runs_two_ppo_steps_with_a_reward_model_folder(tiny_llama_dir, tiny_rm_dir, prompt_file, tmp_path):
    config = tmp_path / "ppo.yaml"
    config.write_text(f"model:\n  name: {tiny_llama_dir}\n  dtype: fp32\nreward_model: {tiny_rm_dir}\n"
                      f"data:\n  train: {prompt_file}\n  val_fraction: 0.25\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli_app(), [
        "ppo", str(config), "--set", f"output_dir={out}", "-s", "rollout.max_new_tokens=6", "-s", "train.steps=2",
        "-s", "train.prompts_per_step=4", "-s", "train.mini_batch_size=2", "-s", "train.micro_batch_size=1",
        "-s", "train.ppo_epochs=2", "-s", "train.eval_prompts=2", "-s", "train.actor_lr=1e-3",
    ])
    assert result.exit_code == 0, result.output
    assert "critic: initialised from the reward model" in result.output  # critic_init=auto picked the RM
    assert (out / "rlhf_training_curves.png").stat().st_size > 10_000
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "config.json").is_file()
    assert (out / "checkpoints" / "step-000002" / "critic" / "model.safetensors").is_file()
    assert list((out / "tensorboard").iterdir())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in rows] == [(0, "eval"), (1, "train"), (2, "train"), (2, "eval")]
    assert {"reward_mean", "reward_std", "kl"} <= set(rows[0])
    assert json.loads((out / "summary.json").read_text())["train_reward/raw_std"] > 0
    samples = [json.loads(line) for line in (out / "eval_samples" / "step_000002.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and (out / "eval_samples" / "step_000000.jsonl").is_file()
    assert {"prompt", "response", "score", "kl", "length", "has_eos"} <= set(samples[0])
    assert sum(s["score"] for s in samples) / 2 == pytest.approx(rows[-1]["reward_mean"], abs=1e-5)


def test_cli_reports_a_bad_key_and_exits_2(tmp_path, prompt_file):
    config = tmp_path / "ppo.yaml"
    config.write_text(f"reward_function: m:f\ndata:\n  train: {prompt_file}\n")
    result = CliRunner().invoke(cli_app(), ["ppo", str(config), "--set", "train.mini_batch_size=3"])
    assert result.exit_code == 2
    assert "train.mini_batch_size (3) must divide train.prompts_per_step x rollout.n" in result.output


BASE = ["data.train=x.jsonl", "reward_function=m:f"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.mini_batch_size=3"],
     "train.mini_batch_size (3) must divide train.prompts_per_step x rollout.n (16 x 1 = 16)"),
    (["train.micro_batch_size=3"], "train.micro_batch_size (3) must divide train.mini_batch_size (8)"),
    (["train.prompts_per_step=6", "rollout.n=2"],
     "train.mini_batch_size (8) must divide train.prompts_per_step x rollout.n (6 x 2 = 12)"),
    (["algorithm.adv_estimator=gea"], "algorithm.adv_estimator='gea' is unknown; valid names: gae, grpo"),
    (["algorithm.kl_estimator=k4"], "algorithm.kl_estimator='k4' is unknown"),
    (["algorithm.loss_agg_mode=mean"], "algorithm.loss_agg_mode='mean' is unknown"),
    (["algorithm.adv_estimator=grpo"], "rollout.n must be >= 2"),
    (["algorithm.critic_init=reward_model"], "algorithm.critic_init=reward_model needs reward_model"),
    (["reward_model=runs/rm/model"], "set exactly one of reward_model"),
    (["algorithm.kl_controller=pid"], "algorithm.kl_controller must be one of ['fixed', 'adaptive']"),
    (["train.actor_lr=0"], "train.actor_lr must be positive"),
    (["train.ppo_epochs=0"], "train.ppo_epochs must be >= 1"),
    (["algorithm.gama=1"], "unknown key 'algorithm.gama'"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(RLConfig, None, BASE + overrides)
    assert message in str(err.value)


def test_default_config_is_the_ppo_recipe():
    cfg = load_config(RLConfig, None, BASE)
    assert (cfg.rollout.temperature, cfg.algorithm.kl_coef, cfg.algorithm.missing_eos_penalty) == (0.7, 0.05, -1.0)
    assert (cfg.algorithm.gamma, cfg.algorithm.lam, cfg.train.ppo_epochs, cfg.train.adam_eps) == (1.0, 0.95, 4, 1e-5)
    assert cfg.algorithm.kl_in_reward and cfg.algorithm.whiten_advantages and not cfg.algorithm.whiten_rewards
    assert cfg.train.schedule == "linear" and cfg.needs_critic
    assert estimator_needs_critic("gae") and not estimator_needs_critic("grpo")
    assert estimator_needs_groups("rloo") and not estimator_needs_groups("reinforce_pp")


def test_shipped_ppo_yaml_is_valid():
    cfg = load_config(RLConfig, Path(__file__).resolve().parents[2] / "configs" / "ppo.yaml")
    assert cfg.reward_model and cfg.algorithm.critic_init == "auto"

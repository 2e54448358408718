"""Composite rewards inside the RL loop: a `rewards:` list drives PPO; ensembles of RM folders."""

import json
import math

from rich.console import Console

from alignflow.config.rewards import RewardSpec
from alignflow.rewards import RewardModelReward, build_reward_term
from alignflow.trainers.rl_controller import train_rl


def test_an_ensemble_of_one_folder_twice_scores_like_the_folder(tiny_rm_dir):
    prompts = [[{"role": "user", "content": "Hi"}], [{"role": "user", "content": "Name a fruit."}]]
    responses = ["Hello there.", "A pear."]
    single = RewardModelReward(tiny_rm_dir, dtype="fp32")(prompts, responses, {})
    for reduce in ("mean", "min"):
        ensemble = build_reward_term(RewardSpec(kind="ensemble", paths=[str(tiny_rm_dir)] * 2, reduce=reduce),
                                     dtype="fp32")
        assert ensemble(prompts, responses, {}) == single


def test_ppo_runs_on_a_weighted_sum_of_a_function_and_a_length_penalty(ppo_config, reward_module, tmp_path):
    rewards = (f"rewards=[{{kind: function, spec: '{reward_module}:length_reward', weight: 2, timeout: 5}}, "
               "{kind: length_penalty, coef: 0.5, target: 2}]")
    cfg = ppo_config("reward_function=", rewards, "algorithm.adv_estimator=grpo", "rollout.n=2",
                     "train.steps=1", "train.eval_prompts=0")
    assert [spec.kind for spec in cfg.reward_specs] == ["function", "length_penalty"]
    result = train_rl(cfg, Console(quiet=True))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["train_reward/raw_std"] >= 0
    assert math.isfinite(result.metrics["reward/raw_mean"])

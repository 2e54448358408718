"""A reward model that outputs NaN stops the run naming the sample, as a Python reward does."""

import json

import pytest
import torch
from rich.console import Console
from transformers import AutoModelForSequenceClassification

from alignflow.config import load_config
from alignflow.config.rl import RLConfig
from alignflow.models import load_tokenizer
from alignflow.models.reward_io import save_reward_model
from alignflow.rewards import RewardError, RewardModelReward, build_reward_function

PROMPTS = [[{"role": "user", "content": "What is 2 + 3?"}]] * 2
RESPONSES = ["5", "The answer is 6."]
METADATA = {"source": ["a.jsonl:1", "a.jsonl:2"]}


@pytest.fixture(scope="module")
def nan_rm_dir(tiny_llama_dir, tmp_path_factory):
    """A decoder reward model whose scalar head is NaN (as after a diverged training run)."""
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    with torch.no_grad():
        model.score.weight.fill_(float("nan"))
    return save_reward_model(model, tokenizer, tmp_path_factory.mktemp("nan-rm") / "model", {"kind": "reward_model"},
                             offset=0.0)


def test_a_reward_model_nan_names_the_reward_and_the_sample(nan_rm_dir):
    reward = RewardModelReward(nan_rm_dir, dtype="fp32")
    with pytest.raises(RewardError, match=rf"reward '{nan_rm_dir}' returned nan for sample 0 \(source a.jsonl:1, "
                                          r"response '5'\)"):
        reward(PROMPTS, RESPONSES, METADATA)


def test_the_single_reward_model_of_a_job_is_checked_too(nan_rm_dir):
    reward = build_reward_function(reward_model=str(nan_rm_dir), dtype="fp32")  # no weighted sum around it
    with pytest.raises(RewardError, match="returned nan for sample 0"):
        reward(PROMPTS, RESPONSES, METADATA)


def test_an_rl_run_stops_at_a_reward_model_nan(nan_rm_dir, tiny_llama_dir, tmp_path):
    from alignflow.trainers.rl_controller import train_rl

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(8)))
    cfg = load_config(RLConfig, None, [
        f"model.name={tiny_llama_dir}", "model.dtype=fp32", f"data.train={prompts}", "data.val_fraction=0.25",
        f"output_dir={tmp_path / 'run'}", f"reward_model={nan_rm_dir}", "algorithm.adv_estimator=grpo",
        "rollout.n=2", "rollout.max_new_tokens=4", "train.steps=2", "train.prompts_per_step=2",
        "train.mini_batch_size=4", "train.micro_batch_size=2", "train.ppo_epochs=1", "train.eval_prompts=0",
    ])
    with pytest.raises(RewardError, match=r"returned nan for sample 0 \(source .*prompts.jsonl:\d+"):
        train_rl(cfg, Console(quiet=True))

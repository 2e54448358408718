"""PPO test fixtures: a prompt file, a tiny reward-model folder and a config builder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification

from alignflow.config import load_config
from alignflow.config.rl import RLConfig
from alignflow.models import load_tokenizer
from alignflow.models.reward_io import save_reward_model

QUESTIONS = ["What is the capital of France?", "How do I bake bread?", "Please tell me a joke.",
             "What is two plus two?", "Can you help me?", "Tell me about numbers.", "Why is the sky blue?",
             "Name a fruit.", "What is a word?", "Say something nice.", "Count to three.", "Who are you?"]


@pytest.fixture
def prompt_file(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in QUESTIONS))
    return path


@pytest.fixture(scope="session")
def tiny_rm_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    """A decoder reward model sharing the tiny Llama's tokenizer (random head, offset 0.25)."""
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    out = tmp_path_factory.mktemp("tiny-rm") / "model"
    return save_reward_model(model, tokenizer, out, {"kind": "reward_model"}, offset=0.25)


REWARDS_MODULE = '''
def length_reward(prompts, responses, metadata):
    """Longer responses score higher."""
    return [len(r) / 10.0 for r in responses]


def text_reward(prompts, responses, metadata):
    """Differs between responses of the same length: a deterministic hash of the text."""
    return [(sum(map(ord, r)) % 11) / 10.0 for r in responses]


def nan_reward(prompts, responses, metadata):
    return [float("nan")] * len(responses)
'''


@pytest.fixture(scope="session")
def reward_module(tmp_path_factory) -> str:
    """Importable module ``ppo_test_rewards`` with Python reward functions; returns its name."""
    folder = tmp_path_factory.mktemp("rewards")
    (folder / "ppo_test_rewards.py").write_text(REWARDS_MODULE)
    sys.path.insert(0, str(folder))
    yield "ppo_test_rewards"
    sys.path.remove(str(folder))


@pytest.fixture
def ppo_config(tiny_llama_dir, prompt_file, tmp_path, reward_module):
    """``ppo_config(*overrides, out=...)`` -> a 2-step PPO config on the tiny Llama (fp32, tiny batches)."""

    def build(*overrides: str, out: Path | None = None) -> RLConfig:
        return load_config(RLConfig, None, [
            f"model.name={tiny_llama_dir}", "model.dtype=fp32", f"data.train={prompt_file}",
            "data.val_fraction=0.25", "data.max_prompt_length=32", f"output_dir={out or tmp_path / 'run'}",
            f"reward_function={reward_module}:length_reward", "algorithm.critic_init=policy",
            "rollout.max_new_tokens=6", "rollout.temperature=0.7",
            "train.steps=2", "train.prompts_per_step=4", "train.ppo_epochs=2", "train.mini_batch_size=2",
            "train.micro_batch_size=1", "train.actor_lr=1e-3", "train.critic_lr=1e-3", "train.eval_prompts=2",
            *overrides,
        ])

    return build

"""Worker fixtures: policy workers built from an RLConfig on the tiny Llama, prompts and a sampled batch."""

from __future__ import annotations

import json

import pytest
import torch
from worker_data import QUESTIONS, TEMPERATURE, encode_prompts

from alignflow.batch import Batch
from alignflow.config import load_config
from alignflow.config.rl import RLConfig
from alignflow.workers import PolicyWorker


@pytest.fixture
def worker_config(tiny_llama_dir, tmp_path):
    """``worker_config(*overrides)`` -> an RLConfig on the tiny Llama (fp32, dropout off, sampling at
    temperature 0.7, 8 new tokens). By default one update per step over 4 rows in one mini-batch of
    4, and 8 planned steps: the actor's LR schedule spans 8 optimizer updates."""
    prompt_file = tmp_path / "prompts.jsonl"
    prompt_file.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in QUESTIONS))

    def build(*overrides: str) -> RLConfig:
        return load_config(RLConfig, None, [
            f"model.name={tiny_llama_dir}", "model.dtype=fp32", f"data.train={prompt_file}",
            "data.max_prompt_length=32", f"output_dir={tmp_path / 'run'}",
            "reward_function=worker_data:constant_reward", "algorithm.critic_init=policy",
            "rollout.max_new_tokens=8", f"rollout.temperature={TEMPERATURE}",
            "train.steps=8", "train.prompts_per_step=4", "train.ppo_epochs=1", "train.mini_batch_size=4",
            "train.micro_batch_size=4", "train.actor_lr=1e-3",
            *overrides,
        ])

    return build


@pytest.fixture
def make_policy_worker(worker_config):
    """``make_policy_worker(*overrides)`` -> a `PolicyWorker` with its models loaded (same seed each time)."""

    def make(*overrides: str) -> PolicyWorker:
        torch.manual_seed(0)
        worker = PolicyWorker(worker_config(*overrides))
        worker.init_model()
        return worker

    return make


@pytest.fixture
def policy_worker(make_policy_worker) -> PolicyWorker:
    return make_policy_worker()


@pytest.fixture
def prompts(policy_worker) -> Batch:
    return encode_prompts(policy_worker.tokenizer, QUESTIONS, range(len(QUESTIONS)))


@pytest.fixture
def rollout(policy_worker, prompts) -> Batch:
    batch, _ = policy_worker.generate(prompts, seed=1)
    return batch


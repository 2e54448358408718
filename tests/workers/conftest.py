"""Worker fixtures: the tiny Llama policy, a colocated rollout worker and a sampled batch."""

from __future__ import annotations

import pytest
import torch

from alignflow.batch import Batch
from alignflow.config.schema import ModelConfig
from alignflow.data.formatting import ChatFormatter
from alignflow.data.tokenize import PromptResponseEncoder
from alignflow.models import disable_dropout, load_policy
from alignflow.rollout import HFRolloutEngine, SamplingParams
from alignflow.workers import RolloutWorker

QUESTIONS = ["What is the capital of France?", "How do I bake bread?", "Please tell me a joke.", "Two plus two?"]


@pytest.fixture
def policy(tiny_llama_dir):
    """(model, tokenizer): the tiny Llama loaded like a PPO policy (pad != EOS, dropout off)."""
    torch.manual_seed(0)
    model, tokenizer = load_policy(ModelConfig(name=str(tiny_llama_dir), dtype="fp32"))
    disable_dropout(model)  # as build_local_workers does
    return model, tokenizer


@pytest.fixture
def prompts(policy) -> Batch:
    _, tokenizer = policy
    messages = [[{"role": "user", "content": q}] for q in QUESTIONS]
    encoder = PromptResponseEncoder(tokenizer, ChatFormatter(tokenizer), max_length=64, max_prompt_length=32)
    ids = [encoder.encode_prompt(m)[0] for m in messages]
    return Batch(meta={"prompt": messages, "prompt_token_ids": ids, "prompt_uid": list(range(len(ids)))})


@pytest.fixture
def rollout_worker(policy):
    """Samples at temperature 0.7 with the policy's own module (colocated)."""
    model, tokenizer = policy
    engine = HFRolloutEngine.from_tokenizer(model, tokenizer)
    return RolloutWorker(engine, SamplingParams(max_new_tokens=8, temperature=0.7),
                         eos_token_ids=list(engine.eos_token_ids), pad_token_id=engine.pad_token_id)


@pytest.fixture
def rollout(rollout_worker, prompts) -> Batch:
    return rollout_worker.generate(prompts, seed=1)

"""Evaluation fixtures: a generator over the tiny Llama and a tiny reward-model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_data import peaked_copy
from transformers import AutoModelForSequenceClassification

from alignflow.evaluation.generate import ResponseGenerator
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


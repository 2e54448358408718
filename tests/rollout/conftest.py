"""Tiny random-init causal LMs built in code (no downloads)."""

import pytest
import torch
import transformers

VOCAB_SIZE = 96
# Larger than the default 0.02 so that next-token distributions are peaked: greedy argmaxes are
# then far from ties and comparisons with model.generate are not at the mercy of rounding.
INIT_STD = 0.3


def tiny_llama() -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        initializer_range=INIT_STD,
    )
    return transformers.LlamaForCausalLM(config).eval()


def tiny_gpt2() -> transformers.GPT2LMHeadModel:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB_SIZE, n_positions=128, n_embd=32, n_layer=2, n_head=4, initializer_range=INIT_STD
    )
    return transformers.GPT2LMHeadModel(config).eval()


MODEL_BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2}


@pytest.fixture(params=sorted(MODEL_BUILDERS))
def model(request) -> transformers.PreTrainedModel:
    return MODEL_BUILDERS[request.param]()


@pytest.fixture
def llama() -> transformers.LlamaForCausalLM:
    return tiny_llama()


@pytest.fixture
def prompts() -> list[list[int]]:
    """Different lengths, so that left padding and position ids are exercised."""
    return [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [18]]

"""RL forward passes run padding-free on causal decoders: the same hidden states, log-probs and
gradients as the padded rows, on prompts and responses of different lengths."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from alignflow.batch import Batch
from alignflow.config.schema import ModelConfig
from alignflow.models import disable_dropout, load_policy
from alignflow.models.forward import (
    last_hidden_state,
    packs_exactly,
    response_inputs,
    response_logprobs,
    token_values,
)


def response_states(model, batch: Batch, packed: bool | None) -> tuple[torch.Tensor, tuple]:
    """Hidden states ``(N, d)`` that predict each real response token, and where each lands ``(row, t)``."""
    inputs, where = response_inputs(model, batch, packed)
    hidden = last_hidden_state(model, inputs["input_ids"], inputs["attention_mask"], inputs["position_ids"])
    return hidden[inputs["rows"], inputs["columns"]], where


def ragged_batch(vocab: int, pad: int) -> Batch:
    """Left-padded prompts of 2..9 tokens and right-padded responses of 1..6 tokens; the first and
    last rows (9 + 4 tokens) fit in one packed row as wide as the padded ones (15)."""
    generator = torch.Generator().manual_seed(0)
    prompt_lengths, response_lengths = [3, 9, 5, 2], [6, 1, 4, 2]
    prompt_ids = torch.full((4, 9), pad)
    prompt_mask = torch.zeros(4, 9, dtype=torch.long)
    response_ids = torch.full((4, 6), pad)
    response_mask = torch.zeros(4, 6, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_lengths, response_lengths)):
        prompt_ids[i, 9 - p :] = torch.randint(3, vocab, (p,), generator=generator)
        prompt_mask[i, 9 - p :] = 1
        response_ids[i, :r] = torch.randint(3, vocab, (r,), generator=generator)
        response_mask[i, :r] = 1
    return Batch(tensors={"prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
                          "response_ids": response_ids, "response_mask": response_mask})


@pytest.fixture
def llama(tiny_llama_dir):
    torch.manual_seed(0)
    model, tokenizer = load_policy(ModelConfig(name=str(tiny_llama_dir), dtype="fp32"))
    disable_dropout(model)
    return model, tokenizer


def test_packed_response_states_equal_the_padded_ones(llama):
    model, tokenizer = llama
    assert packs_exactly(model)
    batch = ragged_batch(model.config.vocab_size, tokenizer.pad_token_id)
    mask = batch["response_mask"].bool()
    with torch.no_grad():
        (packed, packed_where), (padded, padded_where) = response_states(model, batch, True), response_states(
            model, batch, False)
    inputs, _ = response_inputs(model, batch)
    assert inputs["attention_mask"] is None  # packed (no mask, positions restart) by default
    assert inputs["input_ids"].shape[0] < len(batch)  # a row holds two sequences
    for where in (packed_where, padded_where):  # exactly the real response tokens, row-major
        assert torch.equal(torch.stack(where, -1), mask.nonzero())
    torch.testing.assert_close(packed, padded, rtol=1e-4, atol=1e-5)


def test_packed_values_equal_the_padded_ones(llama, tiny_llama_dir):
    """The critic's pass (a sequence-classification model's head at the same positions) packs the same way."""
    _, tokenizer = llama
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama_dir, num_labels=1)  # a random head
    disable_dropout(model)
    assert packs_exactly(model)
    batch = ragged_batch(model.config.vocab_size, tokenizer.pad_token_id)
    with torch.no_grad():
        packed, padded = token_values(model, batch, 0.5, packed=True), token_values(model, batch, 0.5, packed=False)
    mask = batch["response_mask"].bool()
    torch.testing.assert_close(packed, padded, rtol=1e-4, atol=1e-5)
    assert (packed[~mask] == 0).all() and (packed[mask] != 0.5).all()


def test_the_packing_check_runs_outside_the_callers_autocast(tiny_llama_dir, monkeypatch):
    """RL passes run under bf16 autocast and the check happens inside the first of them; its fp32
    tolerance must not meet bf16 states."""
    from alignflow.models import forward

    model, _ = load_policy(ModelConfig(name=str(tiny_llama_dir), dtype="fp32"))
    seen = []
    monkeypatch.setattr(forward, "packing_is_exact", lambda m: seen.append(torch.is_autocast_enabled("cpu")) or True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert packs_exactly(model)
        assert packs_exactly(model)
    assert seen == [False]  # checked once, without autocast


def test_packed_logprobs_give_the_padded_gradients(llama):
    model, tokenizer = llama
    batch = ragged_batch(model.config.vocab_size, tokenizer.pad_token_id)
    mask = batch["response_mask"].bool()

    def gradients(packed: bool):
        model.zero_grad()
        logprobs, _ = response_logprobs(model, batch, 1.0, packed=packed)
        logprobs[mask].sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    packed, padded = gradients(True), gradients(False)
    assert len(packed) == len(padded) > 0
    for a, b in zip(packed, padded):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    logprobs, _ = response_logprobs(model, batch, 1.0)
    assert logprobs[~mask].abs().sum() == 0 and (logprobs[mask] < 0).all()


def test_a_model_that_mixes_packed_sequences_runs_padded(llama, monkeypatch):
    """When the packing check fails (attention that ignores position resets), the padded rows run."""
    model, tokenizer = llama
    from alignflow.models import forward

    monkeypatch.setattr(forward, "_PACKS_EXACTLY", forward.weakref.WeakKeyDictionary({model: False}))
    batch = ragged_batch(model.config.vocab_size, tokenizer.pad_token_id)
    inputs, where = response_inputs(model, batch)
    padded_inputs, padded_where = response_inputs(model, batch, packed=False)
    assert inputs.keys() == padded_inputs.keys() and inputs["attention_mask"] is not None
    for key, value in inputs.items():
        assert torch.equal(value, padded_inputs[key]), key
    assert all(torch.equal(a, b) for a, b in zip(where, padded_where))

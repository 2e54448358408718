"""RL passes with ``train.share_prompt``: a group's n responses after its prompt, computed once,
give the log-probs, entropies, values and gradients of the padded rows (fp32, atol/rtol 1e-5), on a
tiny Llama and on SmolLM2-135M's shape, whatever the order of the rows."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification
from worker_data import TEMPERATURE

from alignflow.algorithms import aggregate_loss, get_policy_loss
from alignflow.batch import Batch
from alignflow.config import ConfigError
from alignflow.models.forward import response_inputs, response_logprobs, token_values

ATOL, RTOL = 1e-5, 1e-5
TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256)
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0,
                    rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu")


def llama(shape: dict, head: str = "lm"):
    torch.manual_seed(0)
    config = LlamaConfig(**shape, pad_token_id=0, num_labels=1)
    return (LlamaForCausalLM(config) if head == "lm" else LlamaForSequenceClassification(config)).eval()


def group_batch(vocab: int, n: int = 3, shuffle: bool = False) -> Batch:
    """Three prompts (4, 9 and 6 tokens, left-padded) with ``n`` samples each (1..7 tokens,
    right-padded; two samples of the second prompt begin alike, one sample is empty), rows
    prompt by prompt as rollouts repeat them, or shuffled as the update's mini-batches are."""
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, vocab, (p,), generator=g) for p in (4, 9, 6)]
    rows = []
    for k, prompt in enumerate(prompts):
        for j in range(n):
            length = int(torch.randint(1, 8, (1,), generator=g))
            response = torch.randint(3, vocab, (length,), generator=g)
            if k == 1 and j == 1:
                response[:2] = rows[-1][1][:2] if len(rows[-1][1]) >= 2 else response[:2]
            if k == 2 and j == 0:
                response = response[:0]
            rows.append((prompt, response))
    if shuffle:
        rows = [rows[i] for i in torch.randperm(len(rows), generator=g).tolist()]
    prompt_ids = torch.zeros(len(rows), 9, dtype=torch.long)
    prompt_mask = torch.zeros_like(prompt_ids)
    response_ids = torch.zeros(len(rows), 7, dtype=torch.long)
    response_mask = torch.zeros_like(response_ids)
    for i, (prompt, response) in enumerate(rows):
        prompt_ids[i, 9 - len(prompt):], prompt_mask[i, 9 - len(prompt):] = prompt, 1
        response_ids[i, : len(response)], response_mask[i, : len(response)] = response, 1
    return Batch(tensors={"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "response_ids": response_ids,
                          "response_mask": response_mask})


def actor_pass(model, batch: Batch, **layout):
    """Log-probs, entropies and the gradients of a GRPO-style loss (clipped ratio against fixed
    behaviour log-probs and advantages, an entropy bonus), as the actor update computes them."""
    model.zero_grad()
    logprobs, entropy = response_logprobs(model, batch, TEMPERATURE, with_entropy=True, **layout)
    mask = batch["response_mask"]
    advantages = torch.linspace(-1.0, 1.0, mask.numel()).view_as(mask.float()) * mask
    loss, _ = get_policy_loss("ppo_clip")(
        logprobs=logprobs, old_logprobs=logprobs.detach() - 0.05, advantages=advantages, response_mask=mask,
        loss_agg_mode="token-mean", clip_low=0.2, clip_high=0.2, dual_clip=None, norm_const=7.0)
    loss = loss - 0.01 * aggregate_loss(entropy, mask, "token-mean", 7.0)
    loss.backward()
    return logprobs.detach(), entropy.detach(), {k: p.grad.clone() for k, p in model.named_parameters()
                                                 if p.grad is not None}


@pytest.mark.parametrize("shuffle", [False, True], ids=["grouped-rows", "shuffled-rows"])
@pytest.mark.parametrize("shape", [TINY, SMOLLM2_135M], ids=["tiny-llama", "smollm2-135m-shape"])
def test_actor_logprobs_entropy_and_gradients_equal_the_padded_ones(shape, shuffle):
    model = llama(shape)
    batch = group_batch(shape["vocab_size"], shuffle=shuffle)
    logprobs, entropy, grads = actor_pass(model, batch, packed=False)
    shared_logprobs, shared_entropy, shared_grads = actor_pass(model, batch, share=True)
    torch.testing.assert_close(shared_logprobs, logprobs, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(shared_entropy, entropy, atol=ATOL, rtol=RTOL)
    assert shared_grads.keys() == grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=ATOL, rtol=RTOL, msg=name)
    # Each prompt once: 3 prompts of 19 tokens instead of 9 rows' worth.
    inputs, _ = response_inputs(model, batch, share=True)
    packed, _ = response_inputs(model, batch, packed=True)
    assert inputs["attention_mask"].dim() == 4
    real = int((inputs["attention_mask"][:, 0].diagonal(dim1=-2, dim2=-1)).sum())  # every computed slot
    assert inputs["input_ids"].numel() < packed["input_ids"].numel() and real == inputs["input_ids"].numel()


def test_critic_values_and_gradients_equal_the_padded_ones():
    model = llama(TINY, head="value")
    batch = group_batch(TINY["vocab_size"], shuffle=True)
    mask = batch["response_mask"].bool()

    def critic_pass(**layout):
        model.zero_grad()
        values = token_values(model, batch, 0.5, **layout)
        ((values - 1.0)[mask] ** 2).mean().backward()
        return values.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    values, grads = critic_pass(packed=False)
    shared_values, shared_grads = critic_pass(share=True)
    torch.testing.assert_close(shared_values, values, atol=ATOL, rtol=RTOL)
    assert (shared_values[~mask] == 0).all()
    assert shared_grads.keys() == grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=ATOL, rtol=RTOL, msg=name)


def test_the_policy_worker_shares_on_request_and_its_passes_agree(make_policy_worker, prompts):
    worker = make_policy_worker("rollout.n=3")
    assert worker.share  # on by default (auto): a tiny Llama with sdpa attention passes the check
    assert not make_policy_worker("train.share_prompt=false").share
    rollout, _ = worker.generate(prompts, seed=1)
    shared = {**worker.compute_ref_logprobs(rollout).tensors, **worker.compute_logprobs(rollout).tensors}
    worker.share = False
    whole = {**worker.compute_ref_logprobs(rollout).tensors, **worker.compute_logprobs(rollout).tensors}
    for key, value in whole.items():
        torch.testing.assert_close(shared[key], value, atol=ATOL, rtol=RTOL, msg=key)


def test_share_prompt_true_refuses_an_attention_without_masks(make_policy_worker, monkeypatch):
    from alignflow.models import shared_prefix

    monkeypatch.setattr(shared_prefix, "MASKED_ATTENTION", ("eager",))  # as if sdpa could take no mask
    with pytest.raises(ConfigError, match=r"train\.share_prompt.*'sdpa'"):
        make_policy_worker("train.share_prompt=true")
    assert not make_policy_worker().share  # auto: runs unshared

"""Shared-prefix packing (a prompt once, then every response under a block mask) computes what
the unshared sequences compute: hidden states, DPO log-probs, losses and gradients, reward-model
rewards and gradients, in fp32 to a tight tolerance, on a tiny Llama and on SmolLM2-135M's shape.
Gradients reaching a shared prompt position are the sum of those of every sequence reading it."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from alignflow.algorithms import bradley_terry_loss
from alignflow.config import ConfigError
from alignflow.config.dpo import DPOLossConfig
from alignflow.data.tokenize import Encoded
from alignflow.models.forward import labelled_token_logprobs, last_hidden_state
from alignflow.models.shared_prefix import (
    common_prefix_length,
    pack_shared_prefix,
    shared_prefix_problem,
    use_shared_prefix,
)
from alignflow.trainers.dpo import dpo_objective
from alignflow.trainers.dpo_logps import pair_logps
from alignflow.trainers.reward import collate_pairs, pair_scores, split_pairs
from alignflow.trainers.sft import collate_sft

ATOL, RTOL = 1e-5, 1e-5  # fp32

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256)
# SmolLM2-135M's config (HuggingFaceTB/SmolLM2-135M config.json), with random weights.
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0,
                    rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu")


def llama(shape: dict, head: str = "lm", attention: str = "sdpa"):
    torch.manual_seed(0)
    config = LlamaConfig(**shape, pad_token_id=0, num_labels=1, attn_implementation=attention)
    model = LlamaForCausalLM(config) if head == "lm" else LlamaForSequenceClassification(config)
    return model.eval()  # no dropout: the comparison is exact


def random_pairs(vocab: int, seed: int = 0) -> list[tuple[Encoded, Encoded]]:
    """Pairs of every kind the packing meets: prompts of different lengths, responses that begin
    alike (the shared part runs past the prompt), a rejected response that is a prefix of the
    chosen one, and a pair whose two prompts were cut differently (nothing in common)."""
    g = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    pairs = []
    for prompt_length, chosen_length, rejected_length in [(7, 5, 3), (12, 2, 6), (3, 9, 9), (1, 4, 1)]:
        prompt = ids(prompt_length)
        pairs.append((Encoded(prompt, ids(chosen_length)), Encoded(prompt, ids(rejected_length))))
    prompt, start = ids(6), ids(3)
    pairs.append((Encoded(prompt, start + ids(4)), Encoded(prompt, start + ids(2))))  # common response start
    chosen = ids(5)
    pairs.append((Encoded(prompt, chosen), Encoded(prompt, chosen[:2])))  # rejected is a prefix of chosen
    pairs.append((Encoded(ids(5), ids(3)), Encoded(ids(4), ids(3))))  # different prompts
    return pairs


# ----------------------------------------------------------------------------- the layout


def test_pack_layout_positions_and_block_mask():
    pack = pack_shared_prefix([[[1, 2, 3, 4], [1, 2, 5]], [[7, 8], [7, 9, 9]]], capacity=0, pad_token_id=0)
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    # Group 0 (7 tokens) and group 1 (1 + 1 + 2 = 4 tokens) each get a row (capacity 0); padding after group 1.
    assert pack.input_ids.tolist() == [[1, 2, 3, 4, 5], [7, 8, 9, 9, 0]]
    assert pack.position_ids.tolist() == [[0, 1, 2, 3, 2], [0, 1, 1, 2, 0]]
    assert pack.attend[0].int().tolist() == [[1, 0, 0, 0, 0],
                                             [1, 1, 0, 0, 0],
                                             [1, 1, 1, 0, 0],
                                             [1, 1, 1, 1, 0],
                                             [1, 1, 0, 0, 1]]  # the second response skips the first
    assert pack.attend[1].int().tolist() == [[1, 0, 0, 0, 0],
                                             [1, 1, 0, 0, 0],
                                             [1, 0, 1, 0, 0],
                                             [1, 0, 1, 1, 0],
                                             [0, 0, 0, 0, 1]]  # padding attends only to itself
    # Every token of every sequence, where it sits.
    for s, sequence in enumerate([[1, 2, 3, 4], [1, 2, 5], [7, 8], [7, 9, 9]]):
        index = torch.arange(len(sequence))
        row, column = pack.where(torch.full_like(index, s), index)
        assert pack.input_ids[row, column].tolist() == sequence
        assert pack.position_ids[row, column].tolist() == index.tolist()
    assert pack.saved_tokens == 2 + 1 and pack.tokens == 12 - 3
    # With room, both groups share one row, each its own block.
    together = pack_shared_prefix([[[1, 2, 3, 4], [1, 2, 5]], [[7, 8], [7, 9, 9]]], capacity=16, pad_token_id=0)
    assert together.input_ids.shape == (1, 9)
    assert not together.attend[0, 5:, :5].any()


# ----------------------------------------------------------------------------- hidden states and log-probs


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_hidden_states_and_logprobs_equal_the_unshared_ones(attention):
    model = llama(TINY, attention=attention)
    assert shared_prefix_problem(model) is None
    pairs = random_pairs(TINY["vocab_size"])
    sequences = [e.input_ids for pair in pairs for e in pair]
    pack = pack_shared_prefix([[c.input_ids, r.input_ids] for c, r in pairs], 40, 0)
    assert pack.input_ids.shape[0] < len(pairs)  # several pairs to a row
    with torch.no_grad():
        shared = last_hidden_state(model, pack.input_ids, pack.attention_mask(model), pack.position_ids)
        for s, sequence in enumerate(sequences):
            alone = last_hidden_state(model, torch.tensor([sequence]), torch.ones(1, len(sequence), dtype=torch.long))
            index = torch.arange(len(sequence))
            torch.testing.assert_close(shared[pack.where(torch.full_like(index, s), index)], alone[0],
                                       atol=ATOL, rtol=RTOL)
        shared_logps, shared_counts = pair_logps(model, pairs, 0, "fp32", capacity=40, share_prompt=True)
        batch = collate_sft([e for pair in pairs for e in pair], 0)
        logps, counts = labelled_token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    torch.testing.assert_close(shared_logps, logps.view(-1, 2), atol=ATOL, rtol=RTOL)
    assert torch.equal(shared_counts, counts.view(-1, 2))


# ----------------------------------------------------------------------------- DPO: losses and gradients


def dpo_loss_and_grads(model, pairs, **layout):
    model.zero_grad()
    policy, tokens = pair_logps(model, pairs, 0, "fp32", **layout)
    reference = torch.linspace(-40.0, -10.0, policy.numel()).view_as(policy)  # any constant reference
    loss, rewards, _ = dpo_objective(policy, reference, tokens, DPOLossConfig(beta=0.1))
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return policy.detach(), loss.detach(), grads


@pytest.mark.parametrize("shape", [TINY, pytest.param(SMOLLM2_135M, id="smollm2-135m-shape")],
                         ids=["tiny-llama", "smollm2-135m-shape"])
def test_dpo_logps_loss_and_gradients_equal_the_unshared_ones(shape):
    model = llama(shape)
    pairs = random_pairs(shape["vocab_size"], seed=1)
    logps, loss, grads = dpo_loss_and_grads(model, pairs)  # right-padded rows, each sequence whole
    for layout in ({"share_prompt": True}, {"share_prompt": True, "capacity": 64}):
        shared_logps, shared_loss, shared_grads = dpo_loss_and_grads(model, pairs, **layout)
        torch.testing.assert_close(shared_logps, logps, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(shared_loss, loss, atol=ATOL, rtol=RTOL)
        assert shared_grads.keys() == grads.keys() and grads
        for name, grad in grads.items():
            torch.testing.assert_close(shared_grads[name], grad, atol=ATOL, rtol=RTOL, msg=name)


def test_gradient_at_a_shared_prompt_position_sums_every_response():
    """d loss / d (prompt embedding) under sharing = the sum over chosen and rejected of their own
    sequences' gradients at that prompt token: one activation feeds both responses."""
    model = llama(TINY)
    body, head = model.model, model.lm_head
    prompt, chosen, rejected = [5, 9, 14, 20], [30, 31, 32], [40, 41]
    sequences = [prompt + chosen, prompt + rejected]

    def logp(hidden, ids, predictors):  # summed log-prob of the response tokens
        logits = head(hidden[predictors]).log_softmax(-1)
        return logits.gather(-1, ids[:, None]).sum()

    # Unshared: each sequence alone; the gradient at each of its prompt positions.
    alone = []
    for sequence in sequences:
        embeds = body.embed_tokens(torch.tensor([sequence])).detach().requires_grad_()
        hidden = body(inputs_embeds=embeds, position_ids=torch.arange(len(sequence))[None]).last_hidden_state[0]
        logp(hidden, torch.tensor(sequence[len(prompt):]), torch.arange(len(prompt) - 1, len(sequence) - 1)).backward()
        alone.append(embeds.grad[0, : len(prompt)])
    # Shared: one row, one prompt.
    pack = pack_shared_prefix([sequences], 0, 0)
    embeds = body.embed_tokens(pack.input_ids).detach().requires_grad_()
    hidden = body(inputs_embeds=embeds, attention_mask=pack.attention_mask(model),
                  position_ids=pack.position_ids).last_hidden_state
    total = 0
    for s, sequence in enumerate(sequences):
        index = torch.arange(len(prompt), len(sequence))
        predictors = pack.where(torch.full_like(index, s), index - 1)
        targets = pack.input_ids[pack.where(torch.full_like(index, s), index)]
        total = total + logp(hidden, targets, predictors)
    total.backward()
    assert torch.equal(pack.where(torch.zeros(4, dtype=torch.long), torch.arange(4))[1], torch.arange(4))
    torch.testing.assert_close(embeds.grad[0, : len(prompt)], alone[0] + alone[1], atol=ATOL, rtol=RTOL)
    assert not torch.allclose(alone[0], alone[1])  # each response contributes its own part


# ----------------------------------------------------------------------------- decoder reward models


def reward_and_grads(model, batch):
    model.zero_grad()
    chosen, rejected = split_pairs(pair_scores(model, batch))
    bradley_terry_loss(chosen, rejected).backward()
    return chosen.detach(), rejected.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                                 if p.grad is not None}


@pytest.mark.parametrize("shape", [TINY, SMOLLM2_135M], ids=["tiny-llama", "smollm2-135m-shape"])
def test_reward_model_rewards_and_gradients_equal_the_unshared_ones(shape):
    model = llama(shape, head="score")
    assert shared_prefix_problem(model) is None
    pairs = random_pairs(shape["vocab_size"], seed=2)
    chosen, rejected, grads = reward_and_grads(model, collate_pairs(pairs, 0))  # HF's own padded forward
    for capacity in (None, 64):
        batch = collate_pairs(pairs, 0, capacity, share_prompt=True)
        shared_chosen, shared_rejected, shared_grads = reward_and_grads(model, batch)
        torch.testing.assert_close(shared_chosen, chosen, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(shared_rejected, rejected, atol=ATOL, rtol=RTOL)
        assert shared_grads.keys() == grads.keys() and grads
        for name, grad in grads.items():
            torch.testing.assert_close(shared_grads[name], grad, atol=ATOL, rtol=RTOL, msg=name)


# ----------------------------------------------------------------------------- refusals


def test_an_encoder_is_refused_when_sharing_is_required_and_skipped_when_auto(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=1)
    assert "not a causal decoder" in shared_prefix_problem(model)
    with pytest.raises(ConfigError, match=r"data\.share_prompt.*not a causal decoder"):
        use_shared_prefix(model, "tiny-bert", "data.share_prompt", True)
    assert use_shared_prefix(model, "tiny-bert", "data.share_prompt", None) is False
    assert use_shared_prefix(model, "tiny-bert", "data.share_prompt", False) is False


def test_an_attention_that_takes_no_mask_is_refused():
    model = llama(TINY)
    model.config._attn_implementation = "flash_attention_2"  # set after loading: no flash-attn needed here
    assert "flash_attention_2" in shared_prefix_problem(model)
    with pytest.raises(ConfigError, match=r"data\.share_prompt.*flash_attention_2.*sdpa, eager"):
        use_shared_prefix(model, "tiny", "data.share_prompt", True)
    assert use_shared_prefix(model, "tiny", "data.share_prompt", None) is False
    assert use_shared_prefix(llama(TINY), "tiny", "data.share_prompt", None) is True

from dataclasses import replace

import pytest
import tokenizers
import torch
import transformers
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from alignflow.rollout import HFRolloutEngine, RolloutEngine, SamplingParams

PAD = 0
GREEDY = SamplingParams(max_new_tokens=12, do_sample=False)


def letters(ids: list[int]) -> str:
    """A decoder with exactly one character per token, so expected stop positions are easy to compute."""
    return "".join(chr(ord("a") + i % 26) for i in ids)


def full_forward_logprobs(model, batch, temperature: float) -> torch.Tensor:
    """Log-probs of the response tokens from one forward pass over prompt + response. -> (B, R)."""
    ids = torch.cat([batch["prompt_ids"], batch["response_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["response_mask"]], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    prompt_len, response_len = batch["prompt_ids"].shape[1], batch["response_ids"].shape[1]
    logits = logits[:, prompt_len - 1 : prompt_len - 1 + response_len] / temperature
    return logits.log_softmax(-1).gather(-1, batch["response_ids"][..., None]).squeeze(-1)


def test_engine_satisfies_protocol(llama):
    assert isinstance(HFRolloutEngine(llama, PAD), RolloutEngine)


def test_batch_layout(llama, prompts):
    batch = HFRolloutEngine(llama, PAD).generate(prompts, GREEDY)
    assert batch["prompt_ids"].shape == (4, 7)
    assert batch["prompt_ids"][1].tolist() == [PAD] * 5 + [12, 13]
    assert batch["prompt_mask"][1].tolist() == [0] * 5 + [1, 1]
    for key in ("response_ids", "response_mask", "sampling_logprobs"):
        assert batch[key].shape == (4, 12)
    assert batch["has_eos"].dtype == torch.bool and not batch["has_eos"].any()
    assert batch["prompt_index"] == [0, 1, 2, 3]
    assert batch.info["generated_tokens"] == 48
    assert batch.info["generation_time_s"] > 0
    assert batch.info["sampling_params"] == GREEDY


def test_greedy_matches_hf_generate(model, prompts):
    engine = HFRolloutEngine(model, PAD, eos_token_ids=[1])
    batch = engine.generate(prompts, GREEDY)
    expected = model.generate(
        batch["prompt_ids"],
        attention_mask=batch["prompt_mask"],
        do_sample=False,
        max_new_tokens=GREEDY.max_new_tokens,
        pad_token_id=PAD,
        eos_token_id=1,
    )
    prompt_len = batch["prompt_ids"].shape[1]
    assert torch.equal(batch["response_ids"], expected[:, prompt_len:])
    # Guard against a degenerate model that would make the comparison trivial.
    assert len({tuple(row) for row in batch["response_ids"].tolist()}) > 1


def test_prompts_are_prefilled_packed_with_the_padded_logits_and_cache(model, prompts):
    engine = HFRolloutEngine(model, PAD)
    padded_prompts, mask = engine._pad_prompts(prompts)
    with torch.inference_mode():
        packed_logits, packed_cache = engine._packed_prefill(padded_prompts, mask)
        padded_logits, padded_cache = engine._padded_prefill(padded_prompts, mask)
        assert engine._packed_prefill_is_exact()
    torch.testing.assert_close(packed_logits, padded_logits, atol=1e-5, rtol=1e-4)
    real = mask.bool()[:, None, :, None]
    for packed, padded in zip(packed_cache.layers, padded_cache.layers, strict=True):
        assert packed.keys.shape == padded.keys.shape
        torch.testing.assert_close(packed.keys * real, padded.keys * real, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(packed.values * real, padded.values * real, atol=1e-5, rtol=1e-4)


def test_eager_attention_prefills_padded_and_still_matches_hf_generate(llama, prompts):
    model = llama
    model.config._attn_implementation = "eager"  # takes no boolean block mask
    engine = HFRolloutEngine(model, PAD, eos_token_ids=[1])
    batch = engine.generate(prompts, GREEDY)
    assert engine._packs_prompts is False
    expected = model.generate(batch["prompt_ids"], attention_mask=batch["prompt_mask"], do_sample=False,
                              max_new_tokens=GREEDY.max_new_tokens, pad_token_id=PAD, eos_token_id=1)
    assert torch.equal(batch["response_ids"], expected[:, batch["prompt_ids"].shape[1]:])


def test_greedy_with_no_repeat_ngram_matches_hf_generate(model):
    prompts = [[5, 6, 7, 5, 8], [9, 10, 11, 12, 9]]  # equal lengths: HF counts pads in n-grams, we do not
    params = SamplingParams(max_new_tokens=40, do_sample=False, no_repeat_ngram_size=2)
    batch = HFRolloutEngine(model, PAD, eos_token_ids=[1]).generate(prompts, params)
    expected = model.generate(torch.tensor(prompts), do_sample=False, max_new_tokens=40, no_repeat_ngram_size=2,
                              pad_token_id=PAD, eos_token_id=1)
    assert torch.equal(batch["response_ids"], expected[:, 5:])
    plain = HFRolloutEngine(model, PAD, eos_token_ids=[1]).generate(prompts, replace(params, no_repeat_ngram_size=0))
    assert not torch.equal(batch["response_ids"], plain["response_ids"])  # the ban changed something
    for prompt, response, mask in zip(prompts, batch["response_ids"].tolist(), batch["response_mask"].tolist()):
        row = prompt + [t for t, m in zip(response, mask) if m]
        bigrams = list(zip(row, row[1:]))
        assert len(bigrams) == len(set(bigrams))


def test_greedy_with_repetition_penalty_matches_hf_generate(model):
    # Equal-length prompts: HF penalizes pad tokens too, we ignore them.
    prompts = [[5, 6, 7, 8], [9, 10, 11, 12]]
    params = SamplingParams(max_new_tokens=12, do_sample=False, repetition_penalty=1.8)
    batch = HFRolloutEngine(model, PAD, eos_token_ids=[1]).generate(prompts, params)
    expected = model.generate(
        torch.tensor(prompts),
        do_sample=False,
        max_new_tokens=12,
        repetition_penalty=1.8,
        pad_token_id=PAD,
        eos_token_id=1,
    )
    assert torch.equal(batch["response_ids"], expected[:, 4:])
    assert not torch.equal(batch["response_ids"], HFRolloutEngine(model, PAD).generate(prompts, GREEDY)["response_ids"])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_logprobs_match_full_forward(model, prompts, temperature):
    params = SamplingParams(max_new_tokens=10, temperature=temperature, seed=3)
    engine = HFRolloutEngine(model, PAD, eos_token_ids=[2, 3])
    batch = engine.generate(prompts, params)
    mask = batch["response_mask"].bool()
    recomputed = full_forward_logprobs(model, batch, temperature)
    torch.testing.assert_close(batch["sampling_logprobs"][mask], recomputed[mask], atol=1e-4, rtol=0)
    assert (batch["sampling_logprobs"][~mask] == 0).all()


def test_eos_ends_response_and_pads_after(llama, prompts):
    free = HFRolloutEngine(llama, PAD).generate(prompts, GREEDY)["response_ids"]
    eos_ids = [free[0, 2].item(), free[1, 4].item()]  # EOS may be a list of ids
    batch = HFRolloutEngine(llama, PAD, eos_token_ids=eos_ids).generate(prompts, GREEDY)

    for row, tokens in enumerate(free.tolist()):
        hits = [i for i, t in enumerate(tokens) if t in eos_ids]
        end = hits[0] + 1 if hits else len(tokens)
        assert batch["has_eos"][row].item() == bool(hits)
        assert batch["response_ids"][row, :end].tolist() == tokens[:end]
        assert batch["response_mask"][row].tolist()[:end] == [1] * end
        assert (batch["response_mask"][row, end:] == 0).all()
        assert (batch["response_ids"][row, end:] == PAD).all()
        assert (batch["sampling_logprobs"][row, end:] == 0).all()
    assert batch["has_eos"][:2].all()
    assert batch.info["generated_tokens"] == batch["response_mask"].sum().item()


def test_stops_early_when_every_row_finished(llama, prompts):
    first_tokens = HFRolloutEngine(llama, PAD).generate(prompts, GREEDY)["response_ids"][:, 0].tolist()
    batch = HFRolloutEngine(llama, PAD, eos_token_ids=first_tokens).generate(prompts, GREEDY)
    assert batch["response_ids"].shape == (4, 1)
    assert batch["has_eos"].all() and batch["response_mask"].all()


def test_stop_strings_end_response(llama, prompts):
    free = HFRolloutEngine(llama, PAD).generate(prompts, GREEDY)["response_ids"].tolist()
    # One stop string from inside row 0's response; one that only exists across row 1's
    # prompt/response boundary (unless it also occurs later), which must not count.
    stop_strings = (letters(free[0][3:5]), letters([prompts[1][-1], free[1][0]]))
    params = SamplingParams(max_new_tokens=12, do_sample=False, stop_strings=stop_strings)
    batch = HFRolloutEngine(llama, PAD, decode=letters).generate(prompts, params)

    for row, tokens in enumerate(free):
        text = letters(tokens)
        ends = [text.find(s) + len(s) for s in stop_strings if s in text]
        end = min(ends) if ends else len(tokens)
        assert batch["response_mask"][row].tolist() == [1] * end + [0] * (batch["response_mask"].shape[1] - end)
        assert batch["response_ids"][row, :end].tolist() == tokens[:end]
    assert batch["response_mask"][0].sum() <= 5
    assert not batch["has_eos"].any()


def test_stop_strings_need_a_decoder(llama, prompts):
    with pytest.raises(ValueError, match="decode"):
        HFRolloutEngine(llama, PAD).generate(prompts, SamplingParams(stop_strings=("x",)))


def test_n_samples_per_prompt_are_consecutive(llama, prompts):
    batch = HFRolloutEngine(llama, PAD).generate(prompts[:2], SamplingParams(max_new_tokens=8, n=3, seed=0))
    assert batch["prompt_index"] == [0, 0, 0, 1, 1, 1]
    assert len(batch) == 6
    for row, prompt in enumerate(batch["prompt_index"]):
        mask = batch["prompt_mask"][row].bool()
        assert batch["prompt_ids"][row][mask].tolist() == prompts[prompt]
    group = {tuple(r) for r in batch["response_ids"][:3].tolist()}
    assert len(group) > 1  # samples of one prompt differ


def test_n_samples_reuse_one_prefill_without_changing_results(model, prompts):
    engine = HFRolloutEngine(model, PAD)
    single = engine.generate(prompts, GREEDY)
    repeated = engine.generate(prompts, SamplingParams(max_new_tokens=12, do_sample=False, n=2))
    assert torch.equal(repeated["response_ids"], single["response_ids"].repeat_interleave(2, dim=0))

    sampled = engine.generate(prompts, SamplingParams(max_new_tokens=8, temperature=0.9, n=3, seed=4))
    mask = sampled["response_mask"].bool()
    recomputed = full_forward_logprobs(model, sampled, temperature=0.9)
    torch.testing.assert_close(sampled["sampling_logprobs"][mask], recomputed[mask], atol=1e-4, rtol=0)


def test_same_seed_same_output_different_seed_different(llama, prompts):
    engine = HFRolloutEngine(llama, PAD)
    first, again, other = (engine.generate(prompts, SamplingParams(max_new_tokens=8, seed=s)) for s in (7, 7, 8))
    assert torch.equal(first["response_ids"], again["response_ids"])
    assert torch.equal(first["sampling_logprobs"], again["sampling_logprobs"])
    assert not torch.equal(first["response_ids"], other["response_ids"])


def test_top_k_1_sampling_equals_greedy(model, prompts):
    engine = HFRolloutEngine(model, PAD)
    greedy = engine.generate(prompts, GREEDY)
    sampled = engine.generate(prompts, SamplingParams(max_new_tokens=12, top_k=1, temperature=0.8, seed=0))
    assert torch.equal(sampled["response_ids"], greedy["response_ids"])
    assert (sampled["sampling_logprobs"] == 0).all()  # a one-token distribution


def test_top_p_and_top_k_samples_have_logprobs_of_the_filtered_distribution(llama, prompts):
    params = SamplingParams(max_new_tokens=8, top_k=5, top_p=0.8, seed=1)
    batch = HFRolloutEngine(llama, PAD).generate(prompts, params)
    unfiltered = full_forward_logprobs(llama, batch, temperature=1.0)
    mask = batch["response_mask"].bool()
    # Renormalizing over fewer tokens can only raise a kept token's probability.
    assert (batch["sampling_logprobs"][mask] >= unfiltered[mask] - 1e-5).all()
    assert (batch["sampling_logprobs"][mask] > unfiltered[mask] + 1e-3).any()


@pytest.mark.parametrize(
    ("prompt_ids", "params", "message"),
    [
        ([[5, 6]], SamplingParams(max_new_tokens=0), "max_new_tokens"),
        ([], GREEDY, "at least one prompt"),
        ([[5, 6], []], GREEDY, "prompt 1 is empty"),
        ([[5, 6], [7, 10_000]], GREEDY, "prompt 1 has token ids outside"),
    ],
)
def test_clear_errors(llama, prompt_ids, params, message):
    with pytest.raises(ValueError, match=message):
        HFRolloutEngine(llama, PAD).generate(prompt_ids, params)


def test_outputs_feed_autograd_and_training_mode_is_restored(llama, prompts):
    llama.train()
    batch = HFRolloutEngine(llama, PAD).generate(prompts, SamplingParams(max_new_tokens=4, seed=0))
    assert llama.training
    ids = torch.cat([batch["prompt_ids"], batch["response_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["response_mask"]], dim=1)
    llama(input_ids=ids, attention_mask=mask).logits.sum().backward()  # no "inference tensor" error
    assert llama.model.embed_tokens.weight.grad is not None


def test_update_weights_copies_into_a_separate_model(llama, prompts):
    torch.manual_seed(1)
    separate = transformers.LlamaForCausalLM(llama.config).eval()
    engine = HFRolloutEngine(separate, PAD)
    assert not torch.equal(
        engine.generate(prompts, GREEDY)["response_ids"],
        HFRolloutEngine(llama, PAD).generate(prompts, GREEDY)["response_ids"],
    )
    engine.update_weights(llama)
    expected = HFRolloutEngine(llama, PAD).generate(prompts, GREEDY)
    assert torch.equal(engine.generate(prompts, GREEDY)["response_ids"], expected["response_ids"])


def test_update_weights_on_the_colocated_module_copies_nothing(llama):
    engine = HFRolloutEngine(llama, PAD)
    before = {name: p.data_ptr() for name, p in llama.named_parameters()}
    with torch.no_grad():
        llama.lm_head.weight.mul_(2)  # an optimizer step on the actor is seen by the engine directly
    engine.update_weights(llama.state_dict())
    assert {name: p.data_ptr() for name, p in llama.named_parameters()} == before


def test_update_weights_rejects_mismatched_keys(llama):
    with pytest.raises(ValueError, match="missing"):
        HFRolloutEngine(llama, PAD).update_weights({"lm_head.weight": llama.lm_head.weight})


def word_tokenizer() -> transformers.PreTrainedTokenizerBase:
    words = ["<pad>", "<unk>", "</s>", "<eot>"] + [f"w{i}" for i in range(4, 96)]
    model = tokenizers.Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    model.pre_tokenizer = Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=model, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def test_from_tokenizer_collects_eos_ids_and_decodes_stop_strings(llama, prompts):
    tokenizer = word_tokenizer()
    llama.generation_config.eos_token_id = [3, 2]
    engine = HFRolloutEngine.from_tokenizer(llama, tokenizer)
    assert engine.eos_token_ids == (3, 2)
    assert engine.pad_token_id == 0

    free = HFRolloutEngine(llama, PAD).generate(prompts, GREEDY)["response_ids"]
    stop = tokenizer.decode(free[0, 2:4].tolist())  # "wA wB"
    params = SamplingParams(max_new_tokens=12, do_sample=False, stop_strings=(stop,))
    batch = HFRolloutEngine.from_tokenizer(llama, tokenizer).generate(prompts[:1], params)
    assert tokenizer.decode(batch["response_ids"][0][batch["response_mask"][0].bool()].tolist()).endswith(stop)

"""A bf16 rollout copy's packed linear layers, and the decode loop's preallocated KV cache."""

import pytest
import torch
from torch import nn

from alignflow.config.schema import ModelConfig
from alignflow.models import load_policy
from alignflow.rollout import HFRolloutEngine, SamplingParams
from alignflow.rollout import hf as hf_engine
from alignflow.rollout.hf import PreallocatedLayer
from alignflow.rollout.linears import PackedLinear, load_full_precision, pack_linears, packing_supported
from alignflow.workers.policy import float_copy, load_sampling_policy, rollout_module

needs_packing = pytest.mark.skipif(not packing_supported(torch.bfloat16),
                                   reason="this CPU build has no oneDNN bf16 (PackedLinear is not used here)")
SAMPLE = SamplingParams(max_new_tokens=6, temperature=1.0, do_sample=True, seed=3, n=2)


@needs_packing
@pytest.mark.parametrize("shape", [(1, 64), (8, 64), (3, 5, 64), (200, 64)], ids=["1", "8", "3d", "prefill"])
@pytest.mark.parametrize("bias", [False, True])
def test_packed_linear_equals_the_bf16_linear_bit_for_bit(shape, bias):
    torch.manual_seed(0)
    linear = nn.Linear(64, 48, bias=bias).to(torch.bfloat16)
    x = torch.randn(shape, dtype=torch.bfloat16)
    packed = PackedLinear.from_linear(linear)
    with torch.inference_mode():
        assert torch.equal(packed(x), linear(x))
    assert "weight" not in packed.state_dict() and ("bias" in packed.state_dict()) == bias


@needs_packing
def test_packed_linear_refuses_a_weight_of_another_shape():
    with pytest.raises(ValueError, match=r"weight of shape \(4, 4\) for a 64 -> 48 layer"):
        PackedLinear(64, 48, bias=False).load_(torch.zeros(4, 4))


@needs_packing
def test_the_bf16_copy_is_packed_and_samples_exactly_as_the_plain_copy(llama, prompts, monkeypatch):
    monkeypatch.setattr("alignflow.runtime.precision.native_bf16", lambda device_type="cpu": True)
    packed = rollout_module(llama, "bf16")
    assert isinstance(packed.model.layers[0].self_attn.q_proj, PackedLinear)
    assert isinstance(packed.lm_head, PackedLinear)
    assert all(not p.requires_grad for p in packed.parameters())
    plain = float_copy(llama, torch.bfloat16)
    a, b = (HFRolloutEngine(m, pad_token_id=0).generate(prompts, SAMPLE) for m in (packed, plain))
    assert torch.equal(a["response_ids"], b["response_ids"])
    assert torch.equal(a["sampling_logprobs"], b["sampling_logprobs"])


@needs_packing
def test_update_weights_repacks_the_copy_after_an_optimizer_step(llama, prompts):
    engine = HFRolloutEngine(pack_linears(float_copy(llama, torch.bfloat16)), pad_token_id=0)
    before = engine.generate(prompts, SAMPLE)
    with torch.no_grad():
        for p in llama.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    engine.update_weights(llama.state_dict())
    fresh = HFRolloutEngine(float_copy(llama, torch.bfloat16), pad_token_id=0).generate(prompts, SAMPLE)
    after = engine.generate(prompts, SAMPLE)
    assert not torch.equal(after["sampling_logprobs"], before["sampling_logprobs"])
    assert torch.equal(after["response_ids"], fresh["response_ids"])
    assert torch.equal(after["sampling_logprobs"], fresh["sampling_logprobs"])
    with pytest.raises(ValueError, match=r"missing \['lm_head.weight'\]"):
        load_full_precision(engine.model, {k: v for k, v in llama.state_dict().items() if k != "lm_head.weight"})


@needs_packing
def test_a_sampling_only_policy_loads_in_bf16_packs_in_place_and_samples_as_the_plain_load(
        tiny_llama_dir, prompts, monkeypatch):
    monkeypatch.setattr("alignflow.runtime.precision.native_bf16", lambda device_type="cpu": True)
    cfg = ModelConfig(name=str(tiny_llama_dir), dtype="bf16")
    packed, _ = load_sampling_policy(cfg, "bf16")
    assert isinstance(packed.lm_head, PackedLinear) and not packed.training
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in packed.parameters())
    plain, _ = load_policy(cfg, dtype=torch.bfloat16)
    a, b = (HFRolloutEngine(m.eval(), pad_token_id=0).generate(prompts, SAMPLE) for m in (packed, plain))
    assert torch.equal(a["response_ids"], b["response_ids"])
    assert torch.equal(a["sampling_logprobs"], b["sampling_logprobs"])


def test_a_sampling_only_policy_in_fp32_is_the_plain_fp32_load(tiny_llama_dir):
    policy, _ = load_sampling_policy(ModelConfig(name=str(tiny_llama_dir), dtype="fp32"), "shared")
    assert not any(isinstance(m, PackedLinear) for m in policy.modules()) and not policy.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in policy.parameters())


def test_the_preallocated_cache_decodes_as_the_dynamic_one(model, prompts, monkeypatch):
    expected_calls = []
    preallocated = hf_engine.preallocated

    def spy(cache, repeats, capacity):
        out = preallocated(cache, repeats, capacity)
        expected_calls.append(all(isinstance(layer, PreallocatedLayer) for layer in out.layers))
        return out

    monkeypatch.setattr(hf_engine, "preallocated", spy)
    fast = HFRolloutEngine(model, pad_token_id=0).generate(prompts, SAMPLE)
    assert expected_calls == [True]

    def dynamic(cache, repeats, capacity):  # the layout before PreallocatedLayer: repeat, then concatenate
        cache.batch_repeat_interleave(repeats)
        return cache

    monkeypatch.setattr(hf_engine, "preallocated", dynamic)
    slow = HFRolloutEngine(model, pad_token_id=0).generate(prompts, SAMPLE)
    for key in ("response_ids", "sampling_logprobs", "response_mask"):
        torch.testing.assert_close(fast[key], slow[key], rtol=0, atol=1e-6)


def test_the_preallocated_layer_refuses_to_grow_past_its_capacity():
    keys = torch.zeros(2, 1, 3, 4)
    layer = PreallocatedLayer(keys, keys, repeats=2, capacity=4)
    assert layer.keys.shape == (4, 1, 3, 4) and layer.get_seq_length() == 3
    layer.update(torch.ones(4, 1, 1, 4), torch.ones(4, 1, 1, 4))
    assert layer.get_seq_length() == 4 and layer.keys[:, :, 3].eq(1).all()
    with pytest.raises(ValueError, match="holds 4 positions; 5 were asked for"):
        layer.update(torch.ones(4, 1, 1, 4), torch.ones(4, 1, 1, 4))

"""The int8 rollout copy (rollout.weights: int8): quantisation, decoding, refresh after updates."""

import pytest
import torch
from torch import nn

from alignflow.config import ConfigError
from alignflow.models.forward import response_logprobs
from alignflow.rollout import HFRolloutEngine, SamplingParams
from alignflow.rollout.int8 import INT8_KERNEL_MAX_ROWS, Int8Linear, quantize_linears, quantize_per_channel
from alignflow.rollout.linears import PackedLinear, packing_supported
from alignflow.workers.policy import float_copy, rollout_module

# Measured on the tiny Llama (init std 0.3, 4 prompts x 4 samples x 8 tokens, temperature 1):
# mean |sampling log-prob - fp32 log-prob| 6e-7 for the fp32 copy, 0.017 for bf16, 0.041 for int8.
MEAN_GAP = 0.1


@pytest.fixture(autouse=True)
def _native_bf16(monkeypatch):  # the int8 copy is built only where bf16 is native; its kernel runs anywhere
    monkeypatch.setattr("alignflow.workers.policy.native_bf16", lambda device_type="cpu": True)


def test_per_channel_quantisation_rounds_each_weight_to_half_a_step():
    weight = torch.randn(16, 32) * torch.logspace(-3, 1, 16)[:, None]
    weight[3] = 0
    q, scale = quantize_per_channel(weight, torch.float32)
    assert q.dtype == torch.int8 and q.abs().max() == 127 and scale[3] == 1
    assert ((q.float() * scale[:, None] - weight).abs() <= scale[:, None] / 2 + 1e-7).all()


@pytest.mark.parametrize("rows", [1, INT8_KERNEL_MAX_ROWS, 3 * INT8_KERNEL_MAX_ROWS], ids=["1", "kernel", "dequant"])
def test_int8_linear_multiplies_by_the_dequantised_weight(rows):
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    module = Int8Linear.from_linear(linear, torch.bfloat16)
    x = torch.randn(rows, 64)
    expected = x @ (module.weight.float() * module.scale.float()[:, None]).T + linear.bias
    out = module(x[None])
    assert out.shape == (1, rows, 48) and out.dtype == torch.bfloat16
    torch.testing.assert_close(out[0].float(), expected, rtol=2e-2, atol=2e-2)


def test_the_copy_quantises_the_blocks_and_keeps_embedding_and_lm_head_in_bf16(llama):
    copy = rollout_module(llama, "int8")
    assert isinstance(copy.model.layers[0].mlp.down_proj, Int8Linear)
    assert type(copy.lm_head) is (PackedLinear if packing_supported(torch.bfloat16) else nn.Linear)
    assert torch.equal(copy.get_input_embeddings().weight, llama.get_input_embeddings().weight.bfloat16())
    x = torch.randn(3, llama.config.hidden_size, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(copy.lm_head(x), nn.functional.linear(x, llama.lm_head.weight.bfloat16()))
    head = quantize_linears(float_copy(llama, torch.bfloat16), torch.bfloat16, lm_head=True)
    assert isinstance(head.lm_head, Int8Linear) and type(head.get_input_embeddings()) is nn.Embedding
    assert all(not p.requires_grad for p in copy.parameters())


def gap(engine, reference, prompts, params):
    out = engine.generate(prompts, params)
    with torch.no_grad():
        exact, _ = response_logprobs(reference, out, params.temperature)
    mask = out["response_mask"].bool()
    return float((out["sampling_logprobs"] - exact).abs()[mask].mean())


def test_int8_sampling_logprobs_stay_close_to_the_fp32_ones(llama, prompts):
    params = SamplingParams(max_new_tokens=8, temperature=1.0, do_sample=True, seed=0, n=4)
    gaps = {weights: gap(HFRolloutEngine(rollout_module(llama, weights), pad_token_id=0), llama, prompts, params)
            for weights in ("fp32", "bf16", "int8")}
    assert gaps["fp32"] < 1e-5
    assert gaps["bf16"] < gaps["int8"] < MEAN_GAP, gaps


def test_update_weights_requantises_the_copy_after_an_optimizer_step(llama, prompts):
    engine = HFRolloutEngine(rollout_module(llama, "int8"), pad_token_id=0)
    ids = torch.tensor([prompts[0]])
    with torch.no_grad():
        before = engine.model(ids).logits
    optimizer = torch.optim.SGD(llama.parameters(), lr=0.5)
    llama.train()
    llama(ids, labels=ids).loss.backward()
    optimizer.step()
    engine.update_weights({k: v.detach() for k, v in llama.state_dict().items()})
    fresh = rollout_module(llama, "int8")
    with torch.no_grad():
        after = engine.model(ids).logits
        assert not torch.allclose(after, before)
        torch.testing.assert_close(after, fresh(ids).logits, rtol=0, atol=0)  # the same as a copy built afresh
    with pytest.raises(ValueError, match="missing"):
        engine.update_weights({k: v for k, v in llama.state_dict().items() if "lm_head" not in k})


def test_int8_needs_a_cpu_with_native_bf16(llama, monkeypatch):
    monkeypatch.setattr("alignflow.workers.policy.native_bf16", lambda device_type="cpu": False)
    with pytest.raises(ConfigError, match="rollout.weights=int8"):
        rollout_module(llama, "int8")

"""Decode speed of the rollout copy forms on SmolLM2-135M, to choose ``rollout.weights: int8``.

Eight chat prompts x 64 new tokens (no EOS: every row decodes all 64) through alignflow's HF
rollout engine, for each copy: fp32, bf16, int8 dynamic (``quantize_dynamic``: int8 weights per
tensor, activations quantised per token), and int8 weight-only (``_weight_int8pack_mm``, per-channel
scales, bf16 activations; fp32 activations are left out: the kernel then runs 20x slower than an
fp32 GEMM, see ``alignflow.rollout.int8``); with and without the LM head quantised. Also: the time to
refresh each copy from the actor's fp32 state dict, and the mean |log-prob gap| of the sampled
tokens to the fp32 actor's recomputed log-probs (what truncated importance sampling corrects).

    nice -n 19 env OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/int8_decode.py [--repeats 3] [--n 1]

Medians of a few repeats on a shared machine: good enough to choose, not to publish.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn

from alignflow.config.schema import ModelConfig
from alignflow.models import load_policy
from alignflow.models.forward import response_logprobs
from alignflow.rollout import HFRolloutEngine, SamplingParams
from alignflow.rollout.int8 import quantize_linears
from alignflow.rollout.linears import load_full_precision
from alignflow.workers.policy import float_copy, rollout_module

PROMPTS = ["What is 17 + 25? Reply with only the number.", "Write a haiku about the sea.",
           "Explain photosynthesis in one sentence.", "Name three prime numbers.",
           "How do I bake bread at home? Give me the main steps.", "Tell me a joke.",
           "What is the capital of France, and why is it famous?", "Translate 'good morning' into Spanish."]


def dynamic_copy(policy: nn.Module, lm_head: bool) -> nn.Module:
    spec = {name for name, m in policy.named_modules() if type(m) is nn.Linear and (lm_head or name != "lm_head")}
    return torch.ao.quantization.quantize_dynamic(rollout_module(policy, "fp32"), spec, dtype=torch.qint8)


@torch.no_grad()
def refresh_dynamic(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """What a sync would do for the dynamic copy: re-quantise every weight per tensor (as its
    default observer does), copy the rest."""
    dynamic = {name: m for name, m in model.named_modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)}
    for name, module in dynamic.items():
        weight = state[f"{name}.weight"]
        scale = float(weight.abs().max()) / 127.5
        module.set_weight_bias(torch.quantize_per_tensor(weight, scale, 0, torch.qint8), state.get(f"{name}.bias"))
    params = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, tensor in params.items():
        if name in state:
            tensor.copy_(state[name])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--n", type=int, default=1, help="samples per prompt (rows = 8 x n)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*(deprecated|torch.ao.quantization).*")
    torch.manual_seed(0)
    policy, tokenizer = load_policy(ModelConfig(name="smollm2-135m-instruct"))
    policy.eval()
    prompt_ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True)
                  for p in PROMPTS]
    prompt_ids = [ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids for ids in prompt_ids]
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.7, do_sample=True, seed=0, n=args.n)
    state = {k: v.detach() for k, v in policy.state_dict().items()}

    def int8_copy(dtype: torch.dtype, lm_head: bool) -> nn.Module:
        return quantize_linears(float_copy(policy, dtype), dtype, lm_head)

    copies = {
        "fp32": (lambda: rollout_module(policy, "fp32"), None),
        "bf16 (packed where supported)": (lambda: rollout_module(policy, "bf16"), None),
        "bf16 plain nn.Linear": (lambda: float_copy(policy, torch.bfloat16), None),
        "int8 weight-only bf16 act, head as rollout.weights=int8": (lambda: rollout_module(policy, "int8"), None),
        "int8 dynamic, LM head fp32": (lambda: dynamic_copy(policy, False), refresh_dynamic),
        "int8 dynamic, LM head int8": (lambda: dynamic_copy(policy, True), refresh_dynamic),
        "int8 weight-only bf16 act, head bf16": (lambda: int8_copy(torch.bfloat16, False), load_full_precision),
        "int8 weight-only bf16 act, head int8": (lambda: int8_copy(torch.bfloat16, True), load_full_precision),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {len(PROMPTS)} prompts x {args.n} "
          f"samples x {args.new_tokens} new tokens; median of {args.repeats}")
    print(f"{'copy':40s} {'decode s':>9s} {'tok/s':>7s} {'refresh s':>10s} {'|gap| to fp32':>14s} {'ratio>2':>8s}")
    for name, (build, refresh) in copies.items():
        model = build()
        engine = HFRolloutEngine(model, tokenizer.pad_token_id or 0, eos_token_ids=())
        engine.generate(prompt_ids, SamplingParams(max_new_tokens=4, do_sample=True, seed=0))  # warm up
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            out = engine.generate(prompt_ids, params)
            times.append(time.perf_counter() - started)
        decode = statistics.median(times)
        refresh_times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            (refresh or engine.update_weights)(*((model, state) if refresh else (state,)))
            refresh_times.append(time.perf_counter() - started)
        with torch.no_grad():
            actor, _ = response_logprobs(policy, out, params.temperature)
        mask = out["response_mask"].bool()
        diff = (actor - out["sampling_logprobs"])[mask]
        gap, capped = float(diff.abs().mean()), float((diff.exp() > 2).float().mean())
        tokens = int(mask.sum())
        refresh_s = statistics.median(refresh_times)
        print(f"{name:40s} {decode:9.2f} {tokens / decode:7.1f} {refresh_s:10.3f} {gap:14.4f} {capped:8.4f}",
              flush=True)


if __name__ == "__main__":
    main()

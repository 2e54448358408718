"""The weights a rollout engine samples from: the policy itself, or a frozen copy of it in bf16,
fp32 or int8, packed for decoding where that pays (:mod:`alignflow.rollout.linears`); and the
autocast it samples under. Shared by the RL policy worker, evaluation and the bench."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from alignflow.config.loader import ConfigError
from alignflow.config.schema import ModelConfig
from alignflow.models.loading import is_peft_model, load_policy
from alignflow.rollout.int8 import quantize_linears
from alignflow.rollout.linears import load_full_precision, pack_linears, packing_supported
from alignflow.runtime import autocast, effective_dtype, native_bf16

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def rollout_module(policy: nn.Module, weights: str) -> nn.Module:
    """The module the rollout engine samples from: the policy itself (``shared``), or a frozen
    copy in bf16, fp32 or int8 (``alignflow.rollout.int8``); ``weights`` as resolved by
    :attr:`RLConfig.rollout_weights`."""
    if weights == "shared":
        return policy
    device_type = next(policy.parameters()).device.type
    if weights == "int8":
        # The int8 kernel is measured (and only fast) on a CPU, with bf16 activations: with fp32
        # ones it runs ~20x slower than an fp32 GEMM.
        if device_type != "cpu" or not native_bf16("cpu"):
            raise ConfigError("rollout.weights=int8 needs a CPU with native bf16 (AVX512-BF16 or AMX), the only "
                              f"place its kernel was measured to pay off; this actor is on {device_type}"
                              f"{'' if device_type != 'cpu' else ' without native bf16'}: use rollout.weights=bf16")
        # The LM head stays bf16 (tied to the embedding where the model ties them): quantised, it decoded
        # slower end to end in bench/int8_decode.py, and above 8 rows it would be dequantised every step.
        copy_ = quantize_linears(float_copy(policy, torch.bfloat16), torch.bfloat16, lm_head=False)
        copy_ = pack_linears(copy_) if packing_supported(torch.bfloat16) else copy_  # the LM head
        load_full_precision(copy_, policy.state_dict())  # quantised from the fp32 weights, as every sync does
        return copy_
    dtype = torch.bfloat16 if effective_dtype(weights, device_type) == "bf16" else torch.float32
    return packed_for_sampling(float_copy(policy, dtype))


def packed_for_sampling(module: nn.Module) -> nn.Module:
    """``module`` with its linear layers packed in place where that pays: a CPU bf16 module decodes
    from oneDNN-packed weights, same outputs, 1.2-1.8x faster matmuls at decode sizes
    (alignflow.rollout.linears). Not under LoRA: peft's layers read their weights."""
    first = next(module.parameters())
    if first.device.type == "cpu" and packing_supported(first.dtype) and not is_peft_model(module):
        return pack_linears(module, first.dtype)
    return module


def load_sampling_policy(cfg: ModelConfig, weights: str) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """A policy for sampling only, with nothing trained beside it: loaded straight in the rollout
    dtype (``weights`` as resolved by :func:`~alignflow.config.rl.resolve_rollout_weights`) and
    packed in place, so no fp32 weights stay in memory beside the copy :func:`rollout_module` would
    make. int8 is quantised from the fp32 weights, which it then drops."""
    dtype = torch.bfloat16 if effective_dtype(weights) == "bf16" else torch.float32  # loads on the CPU
    # Nothing is trained: no fresh LoRA adapters (zero at init; they would block packing), no checkpointing.
    cfg = replace(cfg, gradient_checkpointing=False, lora=replace(cfg.lora, enabled=False))
    policy, tokenizer = load_policy(cfg, dtype=dtype)
    if weights == "int8":
        return rollout_module(policy, weights), tokenizer
    policy.eval().requires_grad_(False)
    return packed_for_sampling(policy), tokenizer


def sampling_precision(module: nn.Module | None, dtype: str, device_type: str) -> contextlib.AbstractContextManager:
    """The autocast a rollout engine samples under: none for a copy already in bf16 (rollout.weights
    bf16 or int8), which computes in bf16 by itself, where autocast would only add dispatch work
    (SmolLM2-135M, 8 rows x 64 tokens on 2 AVX512-BF16 cores: 3.5-3.6 s a call without it, 4.0-4.5 s
    with it); else ``dtype``'s. ``module``: the engine's (None for vLLM, which holds none)."""
    if isinstance(module, nn.Module) and next(module.parameters()).dtype == torch.bfloat16:
        return contextlib.nullcontext()
    return autocast(dtype, device_type)


def float_copy(policy: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A frozen copy of ``policy`` in ``dtype``, in eval mode."""
    # Seed deepcopy's memo with the cast parameters, so no second fp32 copy is materialised on the
    # way (tied weights stay tied: they are one parameter object).
    memo = {id(p): nn.Parameter(p.detach().to(dtype, copy=True), requires_grad=False) for p in policy.parameters()}
    return copy.deepcopy(policy, memo).to(dtype).eval()

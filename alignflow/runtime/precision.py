"""Mixed precision: fp32 master weights, bf16 matmuls under autocast, where bf16 is fast.

A CPU without native bf16 instructions (AVX512-BF16 or AMX) runs bf16 matmuls through emulation:
on an AVX2 EPYC, a bf16 autocast ``Linear`` ran 5x slower than fp32 and a bf16 GEMM 70x slower.
There ``bf16`` means fp32 (with one warning), unless ``ALIGNFLOW_CPU_BF16=1`` forces it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings

import torch


@functools.cache
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` multiplies bf16 at least as fast as fp32 (any CUDA GPU alignflow runs on)."""
    if device_type != "cpu" or os.environ.get("ALIGNFLOW_CPU_BF16") == "1":
        return True
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def effective_dtype(dtype: str, device_type: str = "cpu") -> str:
    """``dtype`` as it runs on ``device_type``: ``bf16`` becomes ``fp32`` where bf16 is emulated."""
    if dtype == "bf16" and not native_bf16(device_type):
        _warn_emulated_bf16()
        return "fp32"
    return dtype


@functools.cache
def _warn_emulated_bf16() -> None:
    warnings.warn("dtype bf16: this CPU has no native bf16 instructions (AVX512-BF16 or AMX), where bf16 "
                  "matmuls run several times slower than fp32, so alignflow runs fp32 (more precise and faster); "
                  "set ALIGNFLOW_CPU_BF16=1 to force bf16", stacklevel=3)


def autocast(dtype: str, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device_type`` (``cpu`` or ``cuda``); a no-op for fp32 or emulated bf16."""
    if effective_dtype(dtype, device_type) == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

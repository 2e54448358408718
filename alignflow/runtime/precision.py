"""Mixed precision: fp32 master weights, bf16 matmuls under autocast."""

from __future__ import annotations

import contextlib

import torch


def autocast(dtype: str, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device_type`` (``cpu`` or ``cuda``); a no-op for fp32."""
    if dtype == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

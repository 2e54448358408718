"""bf16 runs as bf16 only where the hardware multiplies it natively; elsewhere fp32, with a warning."""

import warnings

import pytest
import torch

from alignflow.runtime import precision


@pytest.fixture
def emulated_bf16(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device_type="cpu": device_type != "cpu")
    precision._warn_emulated_bf16.cache_clear()
    yield
    precision._warn_emulated_bf16.cache_clear()


def test_bf16_on_a_cpu_without_native_bf16_runs_fp32_and_says_so_once(emulated_bf16):
    with pytest.warns(UserWarning, match="ALIGNFLOW_CPU_BF16=1"):
        assert precision.effective_dtype("bf16", "cpu") == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.effective_dtype("bf16", "cpu") == "fp32"  # no second warning
        assert precision.effective_dtype("fp32", "cpu") == "fp32"
        assert precision.effective_dtype("bf16", "cuda") == "bf16"
        with precision.autocast("bf16", "cpu"):
            assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32


def test_bf16_autocasts_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device_type="cpu": True)
    assert precision.effective_dtype("bf16", "cpu") == "bf16"
    with precision.autocast("bf16", "cpu"):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16


def test_the_environment_forces_bf16(monkeypatch):
    monkeypatch.setenv("ALIGNFLOW_CPU_BF16", "1")
    precision.native_bf16.cache_clear()
    try:
        assert precision.native_bf16("cpu")
    finally:
        precision.native_bf16.cache_clear()

"""An int8 rollout copy: weight-only int8 linear layers (``rollout.weights: int8``).

Decoding a few rows at a time is memory-bound: every token reads every weight once. Storing the
linear weights as int8 with one fp scale per output channel halves the bytes of a bf16 copy, and
``torch.ops.aten._weight_int8pack_mm`` (a CPU kernel) multiplies the activations by them without
materialising a dequantised matrix. Activations stay in the copy's float dtype (bf16 where the
CPU has native bf16, else fp32); only the weights are rounded.

The LM head can be quantised too (``lm_head=True``; the copy then unties it from the input
embedding, whose lookup stays exact). The rollout copy keeps it in bf16: on SmolLM2-135M it is the
largest matmul of a decode step (49152 x 576), but quantised it decoded slower end to end, and above
``INT8_KERNEL_MAX_ROWS`` rows it would be dequantised at every step. ``bench/int8_decode.py``
measures the forms this was chosen from.

The copy is refreshed from the actor's full-precision state dict
(:func:`~alignflow.rollout.linears.load_full_precision`), which re-quantises every weight: the
rounding follows the trained weights, it never accumulates.
"""

from __future__ import annotations

import torch
from torch import nn

from alignflow.rollout.linears import RolloutLinear, replace_linears

# The int8 kernel is a loop of matrix-vector products: its time grows with the rows while a bf16
# GEMM's barely does. One core of this AVX512-BF16 CPU, (rows x 576) @ (576 x 1536): 2 rows 0.05 ms
# against 0.10 for bf16, 8 rows 0.14 / 0.13, 16 rows 0.26 / 0.16, 32 rows 0.41 / 0.20. Above this
# many rows the weight is dequantised and multiplied in float instead. With fp32 activations the
# kernel is no use at all (8 rows: 5.9 ms against 0.26 for an fp32 GEMM).
INT8_KERNEL_MAX_ROWS = 8
# The kernel reads the input features in blocks of 16: with other widths (8, 24, 40 tried) it
# returned NaN/inf or crashed (torch 2.13). Such layers stay in float.
INT8_KERNEL_FEATURE_MULTIPLE = 16


def quantize_per_channel(weight: torch.Tensor, scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: ``weight ~ q * scale[:, None]`` with q in [-127, 127]."""
    weight = weight.detach().float()
    # amax / 127 maps the largest |w| of each row to 127; a zero row gets scale 1 (q = 0).
    amax = weight.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(weight / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale.to(scale_dtype)


class Int8Linear(RolloutLinear):
    """``y = x @ (q * scale).T + bias`` with an int8 ``weight`` (out, in) and per-row ``scale``.

    ``x`` is cast to the scales' dtype (the copy's activation dtype) and the output has that dtype.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scale", torch.ones(out_features, dtype=dtype, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype) -> Int8Linear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, dtype, linear.weight.device)
        module.load_(linear.weight, linear.bias)
        return module

    @torch.no_grad()
    def load_(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Re-quantise from a full-precision ``weight`` (and copy ``bias``)."""
        q, scale = quantize_per_channel(weight.to(self.weight.device), self.scale.dtype)
        self.weight.copy_(q)
        self.scale.copy_(scale)
        if self.bias is not None:
            self.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.scale.dtype)
        if flat.shape[0] <= INT8_KERNEL_MAX_ROWS:
            out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scale)
        else:  # the prefill, or many rows: a dequantised float matmul is faster (see INT8_KERNEL_MAX_ROWS)
            out = nn.functional.linear(flat, self.weight.to(self.scale.dtype) * self.scale[:, None])
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.scale.dtype}"


def quantize_linears(model: nn.Module, dtype: torch.dtype, lm_head: bool = True) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by an :class:`Int8Linear` computing in
    ``dtype`` (where the kernel supports its width); ``lm_head=False`` keeps the output embedding
    as it is. The rest of the model (the input embedding, norms) should already be in ``dtype``."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return replace_linears(model, lambda linear: Int8Linear.from_linear(linear, dtype),
                           keep=lambda name, linear: ((not lm_head and linear is output)
                                                      or linear.in_features % INT8_KERNEL_FEATURE_MULTIPLE != 0))

"""The linear layers of a rollout copy, stored in a form that decodes faster than ``nn.Linear``.

A rollout copy never trains: it samples, then takes the actor's weights again after each update.
So its linear layers may hold their weights in whatever layout multiplies fastest, as long as they
can be refreshed from the actor's full-precision state dict (:func:`load_full_precision`):

* :class:`PackedLinear` (every bf16 copy on a CPU with native bf16): the weight in oneDNN's
  prepacked blocked layout, the one inductor's freezing pass gives linear layers. Decoding a few rows
  is memory-bound, and a plain bf16 ``F.linear`` streams the weights at half the speed the memory
  allows; the packed layout is 1.2-1.8x faster at 1-64 rows and as fast for a prefill, with
  bit-identical results (measured below).
* :class:`~alignflow.rollout.int8.Int8Linear` (``rollout.weights: int8``): int8 weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

# The row count oneDNN picks the packed layout for. SmolLM2-135M's (1536 x 576) bf16 weights,
# 150 of them (265 MB, more than the caches hold) on 2 AVX512-BF16 cores, plain / packed ms:
# 1 row 21.7 / 12.2, 8 rows 18.9 / 12.0, 16 rows 22.7 / 14.5, 64 rows 36.7 / 30.5, 1200 rows
# (a prefill) 26.4 / 25.3 for 10 weights; identical outputs at every size.
PACKED_FOR_ROWS = 8


class RolloutLinear(nn.Module):
    """A linear layer whose weight is refreshed from a full-precision one by :meth:`load_`.

    Its state dict holds whatever the form keeps (scales, bias), never a ``weight`` in the
    trained layout: :func:`load_full_precision` maps the trained ``<name>.weight`` to :meth:`load_`.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features

    def load_(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        raise NotImplementedError

    def trained_keys(self) -> tuple[str, ...]:
        """The keys the trained layer has in a state dict (``weight``, and ``bias`` if any)."""
        return ("weight", "bias") if getattr(self, "bias", None) is not None else ("weight",)


class PackedLinear(RolloutLinear):
    """``y = x @ weight.T + bias`` with ``weight`` in oneDNN's prepacked layout (CPU, bf16).

    The packed tensor is a plain attribute, not a buffer: it has no storage a state dict, ``copy``
    or ``.to()`` could use; the layer is rebuilt or refreshed (:meth:`load_`) instead.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__(in_features, out_features)
        self.dtype = dtype
        self.packed: torch.Tensor | None = None
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype = torch.bfloat16) -> PackedLinear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, dtype)
        module.load_(linear.weight, linear.bias)
        return module

    @torch.no_grad()
    def load_(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        if weight.shape != (self.out_features, self.in_features):
            raise ValueError(f"weight of shape {tuple(weight.shape)} for a {self.in_features} -> "
                             f"{self.out_features} layer")
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(self.dtype).contiguous(),
                                                              PACKED_FOR_ROWS)
        if self.bias is not None:
            self.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.to(self.dtype), self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed {self.dtype}"


def packing_supported(dtype: torch.dtype) -> bool:
    """Whether :class:`PackedLinear` runs here in ``dtype``: bf16, where this CPU build's oneDNN
    multiplies bf16 (the copy is bf16 only where the CPU runs it natively: runtime.effective_dtype).
    fp32 is left out: its packed GEMM is 2x faster but rounds differently (7.6e-5 on the layer
    above), and an fp32 copy is there to be exact."""
    return (dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def replace_linears(model: nn.Module, build: Callable[[nn.Linear], nn.Module],
                    keep: Callable[[str, nn.Linear], bool] = lambda name, linear: False) -> nn.Module:
    """Replace (in place) every ``nn.Linear`` of ``model`` by ``build(linear)``, except where
    ``keep(qualified_name, linear)``; returns ``model``."""
    for module_name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            name = f"{module_name}.{child_name}" if module_name else child_name
            if type(child) is nn.Linear and not keep(name, child):
                setattr(module, child_name, build(child))
    return model


def pack_linears(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Every ``nn.Linear`` of ``model`` as a :class:`PackedLinear` (in place; an output embedding
    tied to the input one is then held twice: packed, and plain for the lookup)."""
    return replace_linears(model, lambda linear: PackedLinear.from_linear(linear, dtype))


@torch.no_grad()
def load_full_precision(model: nn.Module, source: Mapping[str, torch.Tensor]) -> None:
    """Copy a full-precision state dict (the trained model's keys) into ``model``: each
    :class:`RolloutLinear` reloads (packs, quantises) its weight, every other tensor is copied (and
    cast) unless it already shares the source's storage (a module colocated with the actor)."""
    converted = {name: m for name, m in model.named_modules() if isinstance(m, RolloutLinear)}
    owned = {f"{name}.{key}" for name, m in converted.items() for key in m.state_dict()}
    rest = {k: v for k, v in model.state_dict().items() if k not in owned}
    expected = rest.keys() | {f"{name}.{key}" for name, m in converted.items() for key in m.trained_keys()}
    missing, unexpected = expected - source.keys(), source.keys() - expected
    if missing or unexpected:
        raise ValueError(f"weights do not match the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    for name, module in converted.items():
        module.load_(source[f"{name}.weight"], source.get(f"{name}.bias"))
    for name, tensor in rest.items():
        if tensor.data_ptr() != source[name].data_ptr():
            tensor.copy_(source[name])

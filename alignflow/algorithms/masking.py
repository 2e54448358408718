"""Statistics over the valid (masked-in) positions of padded batches.

Padded positions may hold anything (pad logits, ``-inf`` log-probs, stale values), so every
function here *selects* valid positions with ``torch.where`` instead of multiplying by the mask:
``nan * 0`` is ``nan`` and would leak padding into the statistics.

``mask`` is any tensor broadcastable to ``x``; nonzero (or ``True``) marks a valid position.
Reference: the masked helpers of Ziegler et al. 2019 (lm-human-preferences), written anew.
"""

from __future__ import annotations

import torch


def _bool(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.broadcast_to(mask.to(torch.bool), like.shape)


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``x`` over valid positions.

    Args:
        x: any shape, e.g. ``(batch, response_len)``.
        mask: broadcastable to ``x``; nonzero = valid.
        dim: reduce over this dim only (``None``: over everything, giving a scalar).
    """
    m = _bool(mask, x)
    selected = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return selected.sum() if dim is None else selected.sum(dim)


def masked_count(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Number of valid positions (as ``x``'s dtype), over everything or along ``dim``."""
    m = _bool(mask, x).to(x.dtype)
    return m.sum() if dim is None else m.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over valid positions; 0 (not NaN) where there is no valid position.

    Args:
        x: any shape, e.g. ``(batch, response_len)``.
        mask: broadcastable to ``x``; nonzero = valid.
        dim: reduce over this dim only (``None``: global mean, a scalar).
    """
    total = masked_sum(x, mask, dim)
    count = masked_count(x, mask, dim)
    # An empty row (or batch) has no mean; 0 keeps losses finite and contributes no gradient.
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))


def masked_var(
    x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True, dim: int | None = None
) -> torch.Tensor:
    """Variance of ``x`` over valid positions.

    With ``unbiased=True`` Bessel's correction ``n / (n - 1)`` is applied where ``n > 1``; with a
    single valid position the (biased) variance 0 is returned rather than dividing by zero, so a
    tiny batch cannot crash a training step.

    Args:
        x: any shape, e.g. ``(batch, response_len)``.
        mask: broadcastable to ``x``; nonzero = valid.
        dim: reduce over this dim only (``None``: global, a scalar).
    """
    mean = masked_mean(x, mask, dim)
    centred = x - (mean if dim is None else mean.unsqueeze(dim))
    var = masked_mean(centred * centred, mask, dim)
    if unbiased:
        n = masked_count(x, mask, dim)
        var = torch.where(n > 1, var * n / (n - 1).clamp_min(1), var)
    return var


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise ``x`` to mean 0, (unbiased) variance 1 over the valid positions of the batch.

    Statistics are global over all valid positions (not per row). With ``shift_mean=False`` only
    the scale is changed and the mean is added back — used for rewards, whose sign carries meaning
    that re-centring would destroy. Invalid positions come out exactly 0.

    Args:
        x: ``(batch, response_len)`` (any shape works).
        mask: broadcastable to ``x``; nonzero = valid.
        shift_mean: subtract the mean (True) or keep it (False).
        eps: added to the variance before the square root.
    """
    mean = masked_mean(x, mask)
    var = masked_var(x, mask, unbiased=True)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(_bool(mask, x), whitened, torch.zeros((), dtype=x.dtype, device=x.device))

"""Token log-probabilities and entropies from logits, in row chunks.

With a 49k vocabulary, ``log_softmax`` of ``(batch=8, len=1024, V)`` logits in fp32 is 1.6 GB, and
autograd would keep it for the backward pass. Here the rows are processed ``chunk_size`` at a
time: the forward keeps only the per-row results, and the backward *recomputes* each chunk's
softmax (activation checkpointing, Chen et al. 2016, "Training Deep Nets with Sublinear Memory
Cost"), so peak extra memory is one ``(chunk_size, V)`` fp32 block in both passes. Results are
fp32 even for bf16 logits, because differences of log-probs (ratios, KL) lose everything in bf16.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DEFAULT_CHUNK_SIZE = 512  # rows; a (512, 49k) fp32 block is ~100 MB


def _chunk_logprob(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    z = logits.float()
    if temperature != 1.0:
        z = z / temperature
    picked = z.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(z, dim=-1)


def _chunk_entropy(logits: torch.Tensor, labels: torch.Tensor | None, temperature: float) -> torch.Tensor:
    z = logits.float()
    if temperature != 1.0:
        z = z / temperature
    # H = logsumexp(z) - sum_v p_v z_v, which avoids computing log p for every entry.
    lse = torch.logsumexp(z, dim=-1)
    p = torch.exp(z - lse.unsqueeze(-1))
    return lse - (p * z).sum(-1)


def _rows_forward(
    logits: torch.Tensor, labels: torch.Tensor | None, fn: Callable, temperature: float, chunk_size: int
) -> torch.Tensor:
    """``fn`` over ``(N, V)`` logits, ``chunk_size`` rows at a time, into an ``(N,)`` fp32 tensor."""
    out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    for start in range(0, logits.shape[0], chunk_size):
        stop = start + chunk_size
        lab = None if labels is None else labels[start:stop]
        out[start:stop] = fn(logits[start:stop], lab, temperature)
    return out


class _ChunkedRows(torch.autograd.Function):
    """Apply a row-wise ``fn(logits_chunk, labels_chunk, temperature) -> (rows,)`` in chunks.

    ``logits`` is ``(N, V)``; the output is ``(N,)`` fp32. Backward recomputes each chunk.
    """

    @staticmethod
    def forward(ctx, logits, labels, fn, temperature, chunk_size):  # type: ignore[override]
        out = _rows_forward(logits, labels, fn, temperature, chunk_size)
        ctx.save_for_backward(logits, labels)
        ctx.fn, ctx.temperature, ctx.chunk_size = fn, temperature, chunk_size
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        logits, labels = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.chunk_size):
            stop = start + ctx.chunk_size
            with torch.enable_grad():
                chunk = logits[start:stop].detach().requires_grad_(True)
                lab = None if labels is None else labels[start:stop]
                out = ctx.fn(chunk, lab, ctx.temperature)
                (g,) = torch.autograd.grad(out, chunk, grad_out[start:stop])
            grad[start:stop] = g
        return grad, None, None, None, None


def _apply_rows(
    fn: Callable, logits: torch.Tensor, labels: torch.Tensor | None, temperature: float, chunk_size: int
) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    lead = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])  # a view when logits is contiguous
    flat_labels = None if labels is None else labels.reshape(-1).long()
    if flat.requires_grad and torch.is_grad_enabled():
        out = _ChunkedRows.apply(flat, flat_labels, fn, float(temperature), int(chunk_size))
    else:
        with torch.no_grad():
            out = _rows_forward(flat, flat_labels, fn, float(temperature), int(chunk_size))
    return out.reshape(lead)


def logprobs_from_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """``log_softmax(logits / temperature)[..., labels]`` computed ``chunk_size`` rows at a time.

    The temperature must match the one used for sampling, else the log-probs (and the PPO ratio
    against the sampler's) describe a different distribution.

    Args:
        logits: ``(batch, response_len, vocab)``, any float dtype (bf16 is upcast per chunk).
        labels: ``(batch, response_len)`` integer token ids in ``[0, vocab)``; ``labels[b, t]``
            is the token scored by ``logits[b, t]`` (the caller does the shift by one).
    Returns ``(batch, response_len)`` fp32, differentiable with respect to ``logits``.
    """
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels shape {tuple(labels.shape)} != logits shape[:-1] {tuple(logits.shape[:-1])}")
    return _apply_rows(_chunk_logprob, logits, labels, temperature, chunk_size)


def entropy_from_logits(
    logits: torch.Tensor, temperature: float = 1.0, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> torch.Tensor:
    """Entropy of ``softmax(logits / temperature)`` per position, ``chunk_size`` rows at a time.

    Args:
        logits: ``(batch, response_len, vocab)``, any float dtype.
    Returns ``(batch, response_len)`` fp32 (nats), differentiable (for an entropy bonus).
    """
    return _apply_rows(_chunk_entropy, logits, None, temperature, chunk_size)

"""Token-level negative log-likelihood for supervised fine-tuning.

Reference: standard causal-LM cross-entropy (Radford et al. 2018), summed rather than averaged.
"""

from __future__ import annotations

import torch

from alignflow.algorithms.logprobs import DEFAULT_CHUNK_SIZE, logprobs_from_logits

IGNORE_INDEX = -100


def masked_token_nll(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL over supervised tokens, and how many there were.

    Returns the *sum* so the trainer divides by the token count of the whole accumulated batch:
    averaging each micro-batch first and then the micro-batches would give a token in a
    micro-batch with 10 supervised tokens 10x the weight of one in a micro-batch with 100.

    Args:
        logits: ``(batch, seq_len, vocab)``, any float dtype (computed in fp32, chunked).
        labels: ``(batch, seq_len)`` already aligned with ``logits`` (the caller shifts by one),
            ``ignore_index`` on prompt / padding positions.
    Returns ``(loss_sum, n_tokens)``: fp32 0-dim tensor with grad, long 0-dim tensor.
    """
    valid = labels != ignore_index
    # gather cannot index with -100; any in-range id will do, its log-prob is then discarded.
    safe_labels = torch.where(valid, labels, torch.zeros_like(labels))
    logp = logprobs_from_logits(logits, safe_labels, chunk_size=chunk_size)
    loss_sum = -torch.where(valid, logp, torch.zeros_like(logp)).sum()
    return loss_sum, valid.sum()

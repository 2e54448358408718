"""Post-processing of generated token sequences: cut at EOS, build masks, find last tokens.

Reference: the response truncation step of Huang et al. 2024, "The N+ Implementation Details of
RLHF with PPO: A Case Study on TL;DR Summarization" (details 23-24).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def first_true(x: torch.Tensor) -> torch.Tensor:
    """Index of the first ``True`` along the last dim, or ``x.shape[-1]`` when there is none.

    Args: ``x``: ``(batch, response_len)`` bool. Returns ``(batch,)`` long.
    """
    length = x.shape[-1]
    positions = torch.arange(length, device=x.device).expand_as(x)
    return torch.where(x.to(torch.bool), positions, torch.full_like(positions, length)).min(-1).values


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last nonzero entry of ``mask`` along the last dim, or -1 for an all-zero row.

    Args: ``mask``: ``(batch, response_len)``. Returns ``(batch,)`` long.
    """
    positions = torch.arange(mask.shape[-1], device=mask.device).expand(mask.shape)
    return torch.where(mask.to(torch.bool), positions, torch.full_like(positions, -1)).max(-1).values


def truncate_after_eos(
    response_ids: torch.Tensor,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep each response up to and including its first EOS; pad everything after it.

    Samplers keep emitting tokens for finished rows of a batch (or pad them with a token that may
    equal EOS), so the first EOS — not the padding — decides where the response ends. Rows with
    no EOS (cut at the length limit) are kept whole, and ``has_eos`` lets the caller penalise them.

    Args:
        response_ids: ``(batch, response_len)`` generated ids (prompt excluded).
        eos_token_id: one id or several (chat models often stop on more than one token).
        pad_token_id: id written after the first EOS.
    Returns:
        ``ids`` ``(batch, response_len)``, ``response_mask`` ``(batch, response_len)`` long,
        1 on kept tokens (EOS included), and ``has_eos`` ``(batch,)`` bool.
    """
    eos = torch.as_tensor(
        [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id),
        dtype=response_ids.dtype,
        device=response_ids.device,
    )
    is_eos = torch.isin(response_ids, eos)
    first_eos = first_true(is_eos)  # == response_len when there is none
    has_eos = first_eos < response_ids.shape[-1]
    positions = torch.arange(response_ids.shape[-1], device=response_ids.device).expand_as(response_ids)
    keep = positions <= first_eos.unsqueeze(-1)
    ids = torch.where(keep, response_ids, torch.full_like(response_ids, pad_token_id))
    return ids, keep.long(), has_eos

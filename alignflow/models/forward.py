"""Forward passes that compute only what the loss needs.

A causal LM's output layer is the most expensive matmul for small models with big vocabularies
(SmolLM2: 576 x 49152). We run the transformer body once and apply the output layer only at the
positions that carry a label, in chunks, so no full (batch, length, vocab) tensor is ever built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alignflow.data.tokenize import IGNORE_INDEX


def causal_lm_parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(transformer body returning hidden states, output layer) of a Hugging Face causal LM (LoRA too)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, base.base_model_prefix)
    return body, base.get_output_embeddings()


def last_hidden_state(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    body, _ = causal_lm_parts(model)
    # position_ids from the mask: left padding must not shift the positions of real tokens.
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return out.last_hidden_state


def labelled_token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    chunk_tokens: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row summed next-token log-probs over labelled positions, and per-row label counts.

    Shapes: ``input_ids``, ``attention_mask``, ``labels``: (batch, length); labels are
    ``IGNORE_INDEX`` on prompt and padding. Returns ``(batch,)`` fp32 sums (differentiable) and
    ``(batch,)`` long counts. The output layer sees at most ``chunk_tokens`` labelled positions at
    a time, so the only vocabulary-wide tensor is one (chunk, vocab) block per chunk.
    """
    hidden = last_hidden_state(model, input_ids, attention_mask)
    _, head = causal_lm_parts(model)
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    rows = keep.nonzero()[:, 0]  # row of each kept position, in the same (row-major) order as hidden[keep]
    selected = hidden[:, :-1][keep]
    wanted = targets[keep]
    sums = hidden.new_zeros(hidden.shape[0], dtype=torch.float32)
    for h, y, r in zip(selected.split(chunk_tokens), wanted.split(chunk_tokens), rows.split(chunk_tokens)):
        sums = sums.index_add(0, r, -F.cross_entropy(head(h).float(), y, reduction="none"))
    return sums, keep.sum(-1)


def labelled_token_nll(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    chunk_tokens: int = 2048,
) -> tuple[torch.Tensor, int]:
    """Summed next-token negative log-likelihood over labelled positions, and their count.

    Returning the sum (not the mean) lets the caller normalise by the tokens of the whole
    accumulated batch. Shapes as in ``labelled_token_logprobs``.
    """
    logps, counts = labelled_token_logprobs(model, input_ids, attention_mask, labels, chunk_tokens)
    return -logps.sum(), int(counts.sum())

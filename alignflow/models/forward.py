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


def labelled_token_nll(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    chunk_tokens: int = 2048,
) -> tuple[torch.Tensor, int]:
    """Summed next-token negative log-likelihood over labelled positions, and their count.

    Shapes: ``input_ids``, ``attention_mask``, ``labels``: (batch, length); labels are
    ``IGNORE_INDEX`` on prompt and padding. Returning the sum (not the mean) lets the caller
    normalise by the tokens of the whole accumulated batch.
    """
    hidden = last_hidden_state(model, input_ids, attention_mask)
    _, head = causal_lm_parts(model)
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    selected = hidden[:, :-1][keep]
    wanted = targets[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    for h, y in zip(selected.split(chunk_tokens), wanted.split(chunk_tokens)):
        total = total + F.cross_entropy(head(h).float(), y, reduction="sum")
    return total, int(keep.sum())

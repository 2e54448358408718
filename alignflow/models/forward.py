"""Forward passes that compute only what the loss needs.

A causal LM's output layer is the most expensive matmul for small models with big vocabularies
(SmolLM2: 576 x 49152). We run the transformer body once and apply the output layer only at the
positions that carry a label, in chunks, so no full (batch, length, vocab) tensor is ever built.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from alignflow.algorithms import entropy_from_logits, logprobs_from_logits
from alignflow.batch import Batch
from alignflow.config.loader import ConfigError
from alignflow.data.packing import pack_sequences
from alignflow.data.tokenize import IGNORE_INDEX
from alignflow.models.loading import is_causal_decoder, value_head
from alignflow.models.shared_prefix import SharedPrefixPack, pack_shared_prefix, sequence_logprob_positions


def causal_lm_parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(transformer body returning hidden states, output layer) of a Hugging Face causal LM (LoRA too)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, base.base_model_prefix)
    return body, base.get_output_embeddings()


def last_hidden_state(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Hidden states ``(batch, length, d)``. Padded rows: ``attention_mask``, positions derived from it.
    Packed rows (``alignflow.data.packing``): ``position_ids`` and no mask."""
    body, _ = causal_lm_parts(model)
    if position_ids is None:  # from the mask: left padding must not shift the positions of real tokens
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return out.last_hidden_state


@torch.no_grad()
def packing_is_exact(model: nn.Module) -> bool:
    """Whether ``model`` keeps packed sequences apart: hidden states of two sequences packed in one
    row (positions restarting, no mask) equal those of each sequence alone. Architectures whose
    attention ignores the position resets would silently attend across sequences."""
    vocab = model.get_input_embeddings().num_embeddings
    first, second = torch.arange(3, 8) % vocab, torch.arange(11, 15) % vocab
    was_training = model.training
    model.eval()
    try:
        packed = last_hidden_state(model, torch.cat([first, second])[None], None,
                                   torch.cat([torch.arange(5), torch.arange(4)])[None])
        alone = last_hidden_state(model, second[None], torch.ones(1, 4, dtype=torch.long))
    finally:
        model.train(was_training)
    return torch.allclose(packed[0, 5:].float(), alone[0].float(), atol=1e-4, rtol=1e-3)


_PACKS_EXACTLY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def packs_exactly(model: nn.Module) -> bool:
    """Whether ``model`` is a causal decoder that passes :func:`packing_is_exact`; checked once per
    model (RL passes run padding-free when it is)."""
    if model not in _PACKS_EXACTLY:
        # The check compares fp32 states: outside any autocast of the caller, and eager, so that
        # compiled blocks do not compile again for its tiny shapes.
        device = model.get_input_embeddings().weight.device.type
        with torch.autocast(device, enabled=False), torch.compiler.set_stance("force_eager"):
            _PACKS_EXACTLY[model] = is_causal_decoder(model.config) and packing_is_exact(model)
    return _PACKS_EXACTLY[model]


def packing_capacity(model: nn.Module, model_name: str, data) -> int | None:
    """The row capacity of packed batches (``data.max_length``), or None for padded ones.

    Batches are packed when ``data.packing`` is on and ``model`` is a causal decoder (an encoder
    reads a pooled state and pads); a decoder that fails the packing check (:func:`packs_exactly`,
    shared with the RL passes) is a ``ConfigError`` naming ``data.packing``.
    """
    if not (data.packing and is_causal_decoder(model.config)):
        return None
    if not packs_exactly(model):
        raise ConfigError(f"data.packing: {model_name} attends across packed sequences (its attention "
                          "ignores the position resets); set data.packing=false")
    return data.max_length


def labelled_token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    chunk_tokens: int = 2048,
    position_ids: torch.Tensor | None = None,
    sequence_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row summed next-token log-probs over labelled positions, and per-row label counts.

    Shapes: ``input_ids``, ``attention_mask``, ``labels``: (batch, length); labels are
    ``IGNORE_INDEX`` on prompt and padding. Returns ``(batch,)`` fp32 sums (differentiable) and
    ``(batch,)`` long counts. The output layer sees at most ``chunk_tokens`` labelled positions at
    a time, so the only vocabulary-wide tensor is one (chunk, vocab) block per chunk.

    Packed rows (``alignflow.data.packing``) pass ``position_ids``, no mask, and ``sequence_ids``
    (the sequence each token belongs to, -1 on padding): sums and counts are then per sequence.
    """
    hidden = last_hidden_state(model, input_ids, attention_mask, position_ids)
    _, head = causal_lm_parts(model)
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    if sequence_ids is None:
        owners, count = keep.nonzero()[:, 0], hidden.shape[0]  # row of each kept position, row-major like hidden[keep]
    else:
        owners, count = sequence_ids[:, 1:][keep], int(sequence_ids.max()) + 1
    selected = hidden[:, :-1][keep]
    wanted = targets[keep]
    sums = hidden.new_zeros(count, dtype=torch.float32)
    for h, y, r in zip(selected.split(chunk_tokens), wanted.split(chunk_tokens), owners.split(chunk_tokens)):
        sums = sums.index_add(0, r, -F.cross_entropy(head(h).float(), y, reduction="none"))
    return sums, torch.bincount(owners, minlength=count)


def shared_prefix_logprobs(model: nn.Module, pack: SharedPrefixPack, label_starts: list[int] | torch.Tensor,
                           chunk_tokens: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed next-token log-probs ``(sequences,)`` fp32 (differentiable) and label
    counts, of a :class:`~alignflow.models.shared_prefix.SharedPrefixPack`: every token of sequence
    ``s`` from ``label_starts[s]`` (its prompt length) on is labelled, as in
    :func:`labelled_token_logprobs` with the output layer in chunks of ``chunk_tokens``."""
    pack = pack.to(model.get_input_embeddings().weight.device)
    hidden = last_hidden_state(model, pack.input_ids, pack.attention_mask(model), pack.position_ids)
    _, head = causal_lm_parts(model)
    owners, rows, columns, wanted = sequence_logprob_positions(pack, label_starts)
    selected = hidden[rows, columns]
    count = len(pack.lengths)
    sums = hidden.new_zeros(count, dtype=torch.float32)
    for h, y, r in zip(selected.split(chunk_tokens), wanted.split(chunk_tokens), owners.split(chunk_tokens)):
        sums = sums.index_add(0, r, -F.cross_entropy(head(h).float(), y, reduction="none"))
    return sums, torch.bincount(owners, minlength=count)


def labelled_token_nll(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    chunk_tokens: int = 2048,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Summed next-token negative log-likelihood over labelled positions, and their count.

    Returning the sum (not the mean) lets the caller normalise by the tokens of the whole
    accumulated batch. Shapes as in ``labelled_token_logprobs``.
    """
    logps, counts = labelled_token_logprobs(model, input_ids, attention_mask, labels, chunk_tokens, position_ids)
    return -logps.sum(), int(counts.sum())


# ----------------------------------------------------------------------------- RL passes over sampled responses


class HeadAtPositions(nn.Module):
    """A causal LM (``head="lm"``) or value model (``head="value"``) whose forward runs the body
    once and its output layer only at the chosen ``(rows, columns)`` positions: ``(N, out)``.

    Every RL pass over the policy or the critic goes through this module's forward, so a wrapper
    that works in forward hooks (FSDP2 gathers parameters there and reduces their gradients after)
    covers the embeddings, the final norm and the head as well as the blocks.
    """

    def __init__(self, model: nn.Module, head: str = "lm") -> None:
        super().__init__()
        if head not in ("lm", "value"):
            raise ValueError(f"head must be 'lm' or 'value', got {head!r}")
        self.model, self.head = model, head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, position_ids: torch.Tensor,
                rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        hidden = last_hidden_state(self.model, input_ids, attention_mask, position_ids)
        output_layer = causal_lm_parts(self.model)[1] if self.head == "lm" else value_head(self.model)
        return output_layer(hidden[rows, columns])


def as_head_at_positions(model: nn.Module, head: str = "lm") -> HeadAtPositions:
    """``model`` itself when it already is one, else a wrapper over it (no weights are copied)."""
    return model if isinstance(model, HeadAtPositions) else HeadAtPositions(model, head)


def sequence_inputs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt (left-padded) + response (right-padded) ids and attention mask, ``(B, P + R)``."""
    ids = torch.cat([batch["prompt_ids"], batch["response_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["response_mask"]], dim=1)
    return ids, mask


def response_inputs(model: nn.Module, batch: Batch, packed: bool | None = None, *, share: bool = False
                    ) -> tuple[dict[str, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]:
    """The :class:`HeadAtPositions` inputs that score every real response token, and where each
    lands in the batch, ``(row, t)``.

    The hidden state at position ``P - 1 + t`` (the last prompt token, then response tokens)
    predicts response token ``t``. A causal decoder that keeps packed sequences apart
    (``packed=None`` asks :func:`packs_exactly`) runs padding-free: each row's real prompt and
    response tokens are packed back to back, so neither the left padding of short prompts nor the
    right padding of short responses is computed. Other models run the padded rows, with positions
    from the attention mask so that left padding does not shift them.

    ``share`` (``train.share_prompt``; the caller checked the model with
    ``models.shared_prefix.use_shared_prefix``): rows with the same prompt (a group's n samples)
    form one group of a :func:`~alignflow.models.shared_prefix.pack_shared_prefix` pack, the
    prompt computed once, and the 4D block mask goes in ``attention_mask``.
    """
    prompt_ids, response_ids = batch["prompt_ids"], batch["response_ids"]
    device = prompt_ids.device
    response_lengths = batch["response_mask"].sum(-1)
    row, t = (torch.arange(response_ids.shape[1], device=device) < response_lengths[:, None]).nonzero(as_tuple=True)
    if share:
        return _shared_response_inputs(model, batch, response_lengths, row, t), (row, t)
    if packed is None:
        packed = packs_exactly(model)
    if not packed:
        ids, mask = sequence_inputs(batch)
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
                  "rows": row, "columns": prompt_ids.shape[1] - 1 + t}
        return inputs, (row, t)
    prompt_mask = batch["prompt_mask"].bool()
    prompt_lengths = prompt_mask.sum(-1)
    sequences = [torch.cat([p[m], r[:n]]).tolist()
                 for p, m, r, n in zip(prompt_ids, prompt_mask, response_ids, response_lengths.tolist())]
    width = prompt_ids.shape[1] + response_ids.shape[1]  # rows as wide as the padded ones
    pack = {k: v.to(device) for k, v in pack_sequences(sequences, width, pad_token_id=0).items()}
    packed_row, start = pack["segments"][row].unbind(-1)
    inputs = {"input_ids": pack["input_ids"], "attention_mask": None, "position_ids": pack["position_ids"],
              "rows": packed_row, "columns": start + prompt_lengths[row] - 1 + t}
    return inputs, (row, t)


def _shared_response_inputs(model: nn.Module, batch: Batch, response_lengths: torch.Tensor, row: torch.Tensor,
                            t: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`response_inputs` over a shared-prefix pack: rows grouped by their real prompt tokens
    (in order of first appearance), packed into rows as wide as the padded ones."""
    prompt_ids, response_ids, prompt_mask = batch["prompt_ids"], batch["response_ids"], batch["prompt_mask"].bool()
    prompts = [tuple(p[m].tolist()) for p, m in zip(prompt_ids, prompt_mask)]
    members: dict[tuple[int, ...], list[int]] = {}
    for i, prompt in enumerate(prompts):
        members.setdefault(prompt, []).append(i)
    lengths = response_lengths.tolist()
    groups = [[list(prompt) + response_ids[i, : lengths[i]].tolist() for i in rows]
              for prompt, rows in members.items()]
    sequence_of_row = torch.empty(len(prompts), dtype=torch.long)
    sequence_of_row[[i for rows in members.values() for i in rows]] = torch.arange(len(prompts))
    width = prompt_ids.shape[1] + response_ids.shape[1]
    pack = pack_shared_prefix(groups, width, pad_token_id=0).to(prompt_ids.device)
    prompt_lengths = prompt_mask.sum(-1)
    rows, columns = pack.where(sequence_of_row.to(prompt_ids.device)[row], prompt_lengths[row] - 1 + t)
    return {"input_ids": pack.input_ids, "attention_mask": pack.attention_mask(model),
            "position_ids": pack.position_ids, "rows": rows, "columns": columns}


def _scatter(values: torch.Tensor, where: tuple[torch.Tensor, torch.Tensor], shape: torch.Size) -> torch.Tensor:
    """``(N,)`` values into a zero ``shape`` tensor at ``where`` (differentiable)."""
    return values.new_zeros(shape).index_put(where, values)


def response_logprobs(model: nn.Module, batch: Batch, temperature: float, *, with_entropy: bool = False,
                      packed: bool | None = None, share: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs ``(B, R)`` of the response tokens under ``softmax(logits / temperature)``, and
    optionally the entropy ``(B, R)`` of that distribution; both 0 on padding.

    ``model``: a causal LM or its :class:`HeadAtPositions` (the form sharded training wraps);
    ``share``: each prompt computed once for all its rows (see :func:`response_inputs`)."""
    module = as_head_at_positions(model, "lm")
    inputs, where = response_inputs(module.model, batch, packed, share=share)
    logits = module(**inputs)
    shape = batch["response_ids"].shape
    logprobs = _scatter(logprobs_from_logits(logits, batch["response_ids"][where], temperature), where, shape)
    entropy = _scatter(entropy_from_logits(logits, temperature), where, shape) if with_entropy else None
    return logprobs, entropy


def token_values(model: nn.Module, batch: Batch, offset: float = 0.0, *, packed: bool | None = None,
                 share: bool = False) -> torch.Tensor:
    """Values ``(B, R)`` fp32 of the states before each response token; 0 on padding.

    ``model``: a one-output sequence-classification model or its :class:`HeadAtPositions`;
    ``share``: each prompt computed once for all its rows (see :func:`response_inputs`)."""
    module = as_head_at_positions(model, "value")
    inputs, where = response_inputs(module.model, batch, packed, share=share)
    values = module(**inputs).squeeze(-1).float() + offset
    return _scatter(values, where, batch["response_ids"].shape)

"""Shared-prefix packing: a prompt computed once, followed by all the responses that continue it.

A preference pair (chosen, rejected) or an RL group (n samples) repeats one prompt. Here the
sequences of a *group* share one row: their longest common prefix (the prompt, plus any response
tokens they all begin with) once, then each sequence's own remainder, the *suffixes*, back to back::

    [ prefix (c tokens) | suffix of sequence 0 | suffix of sequence 1 | ... ]
    positions 0 .. c-1    c .. len_0 - 1         c .. len_1 - 1

A block mask lets a prefix token attend causally within the prefix, and a suffix token attend to
the prefix and causally to its own suffix, never to another sequence's. Positions continue from
the prefix's end in every suffix. A causal decoder computes every token's hidden state from the
tokens before it and their positions alone, so each sequence's states equal those of the sequence
run on its own, while the prefix runs once; its activations feed every suffix, and autograd sums
the gradients that flow back into them from all the sequences.

Several groups share a row when they fit (``capacity``), each its own block of the mask, as
``alignflow.data.packing`` does for whole sequences. The mask goes to the Hugging Face model as a
4D ``attention_mask`` (``transformers.masking_utils`` passes a 4D mask through unchanged): boolean
for ``sdpa``, additive for ``eager``. Other attention implementations (flash-attention, flex) take
no such mask, and an encoder reads every token both ways: :func:`shared_prefix_problem` says why a
model cannot share, and :func:`use_shared_prefix` turns that into a ``ConfigError`` naming the setting.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import nn

from alignflow.config.loader import ConfigError
from alignflow.data.packing import first_fit_decreasing
from alignflow.models.loading import is_causal_decoder

# Attention implementations that apply a custom 4D mask as given.
MASKED_ATTENTION = ("sdpa", "eager")


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix all ``sequences`` begin with (at most the shortest's length)."""
    first, n = sequences[0], min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != first[i] for s in sequences[1:]):
            return i
    return n


@dataclass
class SharedPrefixPack:
    """Rows of groups packed prefix-first. Sequences are numbered group by group, in order.

    ``input_ids``, ``position_ids``: ``(rows, width)``; ``attend``: ``(rows, width, width)`` bool,
    ``attend[r, q, k]``: token ``q`` of row ``r`` may attend to token ``k``; ``segments``:
    ``(sequences, 4)``: each sequence's row, prefix start, shared length and suffix start;
    ``lengths``: ``(sequences,)`` tokens of each sequence.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attend: torch.Tensor
    segments: torch.Tensor
    lengths: torch.Tensor

    def where(self, sequence: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(row, column)`` of token ``index`` of sequence ``sequence`` (tensors of one shape)."""
        row, prefix, shared, suffix = self.segments[sequence].unbind(-1)
        return row, torch.where(index < shared, prefix + index, suffix + index - shared)

    def last_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(row, column)`` of every sequence's final token, where a decoder reward model reads."""
        return self.where(torch.arange(len(self.lengths), device=self.lengths.device), self.lengths - 1)

    def attention_mask(self, model: nn.Module) -> torch.Tensor:
        """The 4D mask ``(rows, 1, width, width)`` in the form ``model``'s attention applies."""
        allowed = self.attend[:, None]
        implementation = attention_implementation(model)
        if implementation == "eager":  # added to the scores
            return torch.zeros(allowed.shape, device=allowed.device).masked_fill(
                ~allowed, torch.finfo(torch.float32).min)
        return allowed

    def to(self, device: torch.device | str) -> SharedPrefixPack:
        return SharedPrefixPack(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def saved_tokens(self) -> int:
        """Tokens the unshared sequences compute and this pack does not: a group's shared prefix
        once instead of once per sequence."""
        shared, members = _group_prefixes(self.segments)
        return sum(c * (m - 1) for c, m in zip(shared, members))

    @property
    def tokens(self) -> int:
        """Tokens computed (padding excluded)."""
        return int(self.lengths.sum()) - self.saved_tokens


def _group_prefixes(segments: torch.Tensor) -> tuple[list[int], list[int]]:
    """Each group's shared length and number of sequences (a group's sequences share one
    ``(row, prefix start)``)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for row, start, shared, _ in segments.tolist():
        groups.setdefault((row, start), [shared, 0])[1] += 1
    return [c for c, _ in groups.values()], [m for _, m in groups.values()]


def pack_shared_prefix(groups: Sequence[Sequence[Sequence[int]]], capacity: int, pad_token_id: int,
                       shared: Sequence[int] | None = None) -> SharedPrefixPack:
    """Pack ``groups`` (each a list of token-id sequences) prefix-first into rows of at most
    ``capacity`` tokens (a group longer than that, or every group with ``capacity`` 0, gets a row
    of its own). ``shared``: each group's shared length (at most its common prefix; default the
    whole common prefix). Trailing padding is a block of its own, attending only to itself."""
    if any(not group or not all(group) for group in groups):
        raise ValueError("every group needs at least one sequence, and every sequence a token")
    limits = [common_prefix_length(g) for g in groups]
    if shared is None:
        shared = limits
    elif any(not 0 <= s <= limit for s, limit in zip(shared, limits, strict=True)):
        raise ValueError(f"shared lengths {list(shared)} exceed the common prefixes {limits}")
    sizes = [c + sum(len(s) - c for s in g) for g, c in zip(groups, shared)]
    bins = first_fit_decreasing(sizes, capacity)
    width = max(sum(sizes[i] for i in members) for members in bins)
    first_sequence = torch.tensor([0] + [len(g) for g in groups]).cumsum(0).tolist()
    input_ids = torch.full((len(bins), width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros_like(input_ids)
    block = torch.full_like(input_ids, -1)  # the group each token belongs to (padding: a block of its own)
    member = torch.full_like(input_ids, -1)  # the sequence within its group; -1 on the prefix
    segments = torch.zeros(first_sequence[-1], 4, dtype=torch.long)
    for row, members in enumerate(bins):
        start = 0
        for g in members:
            c, sequences = shared[g], groups[g]
            input_ids[row, start : start + c] = torch.tensor(sequences[0][:c], dtype=torch.long)
            position_ids[row, start : start + c] = torch.arange(c)
            block[row, start : start + c] = g
            at = start + c
            for k, sequence in enumerate(sequences):
                n = len(sequence) - c
                input_ids[row, at : at + n] = torch.tensor(sequence[c:], dtype=torch.long)
                position_ids[row, at : at + n] = torch.arange(c, len(sequence))
                block[row, at : at + n] = g
                member[row, at : at + n] = k
                segments[first_sequence[g] + k] = torch.tensor([row, start, c, at])
                at += n
            start = at
        position_ids[row, start:] = torch.arange(width - start)
        block[row, start:] = len(groups) + row
    column = torch.arange(width)
    causal = column[None, :] <= column[:, None]
    same_block = block[:, :, None] == block[:, None, :]
    key_member, query_member = member[:, None, :], member[:, :, None]
    attend = causal & same_block & ((key_member == -1) | (key_member == query_member))
    lengths = torch.tensor([len(s) for g in groups for s in g], dtype=torch.long)
    return SharedPrefixPack(input_ids, position_ids, attend, segments, lengths)


def sequence_logprob_positions(pack: SharedPrefixPack, label_starts: Sequence[int] | torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every labelled token of every sequence: tokens ``j`` from ``label_starts[s]`` (at least 1)
    to the sequence's end. Returns ``(sequence, row, column, target)``: the sequence each belongs
    to, where the hidden state that predicts it sits (token ``j - 1``), and its id."""
    device = pack.lengths.device
    starts = torch.as_tensor(label_starts, dtype=torch.long, device=device).clamp(min=1)
    counts = (pack.lengths - starts).clamp(min=0)
    sequence = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    first = torch.repeat_interleave(counts.cumsum(0) - counts, counts)  # each label's sequence's first label
    index = starts[sequence] + torch.arange(int(counts.sum()), device=device) - first
    row, column = pack.where(sequence, index - 1)
    target_row, target_column = pack.where(sequence, index)
    return sequence, row, column, pack.input_ids[target_row, target_column]


# ----------------------------------------------------------------------------- whether a model can share


def attention_implementation(model: nn.Module) -> str | None:
    return getattr(model.config, "_attn_implementation", None)


@torch.no_grad()
def shared_prefix_is_exact(model: nn.Module) -> bool:
    """Whether ``model``'s hidden states under a shared-prefix pack equal those of each sequence
    alone (a prompt and two continuations, one of them the longer)."""
    from alignflow.models.forward import last_hidden_state

    vocab = model.get_input_embeddings().num_embeddings
    prompt, first, second = (torch.arange(3, 8) % vocab).tolist(), [11, 12, 13], [17, 18]
    sequences = [prompt + [v % vocab for v in first], prompt + [v % vocab for v in second]]
    pack = pack_shared_prefix([sequences], 0, 0)
    device = model.get_input_embeddings().weight.device
    was_training = model.training
    model.eval()
    try:
        shared = last_hidden_state(model, pack.input_ids.to(device), pack.attention_mask(model).to(device),
                                   pack.position_ids.to(device))
        for s, sequence in enumerate(sequences):
            alone = last_hidden_state(model, torch.tensor([sequence], device=device),
                                      torch.ones(1, len(sequence), dtype=torch.long, device=device))
            index = torch.arange(len(sequence))
            row, column = pack.where(torch.full_like(index, s), index)
            if not torch.allclose(shared[row, column].float(), alone[0].float(), atol=1e-4, rtol=1e-3):
                return False
    finally:
        model.train(was_training)
    return True


def shared_prefix_problem(model: nn.Module) -> str | None:
    """Why ``model`` cannot run shared-prefix packs exactly, or None when it can."""
    if not is_causal_decoder(model.config):
        return (f"{model.config.model_type} is not a causal decoder (an encoder attends both ways, so no "
                "response can follow a prompt computed once)")
    implementation = attention_implementation(model)
    if implementation not in MASKED_ATTENTION:
        return (f"its attention implementation {implementation!r} takes no custom 4D mask "
                f"(one of {', '.join(MASKED_ATTENTION)} does)")
    device = model.get_input_embeddings().weight.device.type
    with torch.autocast(device, enabled=False), torch.compiler.set_stance("force_eager"):
        if not shared_prefix_is_exact(model):
            return "its hidden states under the shared-prefix mask differ from those of each sequence alone"
    return None


_PROBLEMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shares_prefix_exactly(model: nn.Module) -> bool:
    """Whether ``model`` can run shared-prefix packs (checked once per model)."""
    if model not in _PROBLEMS:
        _PROBLEMS[model] = shared_prefix_problem(model)
    return _PROBLEMS[model] is None


def use_shared_prefix(model: nn.Module, model_name: str, setting: str, requested: bool | None) -> bool:
    """Whether a trainer shares prompts: ``requested`` None (auto) shares where ``model`` can, True
    requires it (a ``ConfigError`` naming ``setting`` where the model cannot), False never."""
    if requested is False:
        return False
    if shares_prefix_exactly(model):
        return True
    if requested:
        raise ConfigError(f"{setting}: {model_name} cannot compute a shared prompt once: {_PROBLEMS[model]}; "
                          f"set {setting}=false (or leave it unset to share only where the model can)")
    return False

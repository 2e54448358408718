"""Padding-free batches: several sequences share one row, each with its own positions.

A packed row holds whole sequences back to back; ``position_ids`` restart at 0 for every sequence
and no attention mask is passed, so transformers builds a block-diagonal causal mask from the
position resets (``masking_utils.find_packed_sequence_indices``): no token attends across
sequences, and the computation equals the padded one without the padding.
"""

from __future__ import annotations

import torch


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into bins of at most ``capacity`` tokens (longest first, each
    into the first bin with room). A length above ``capacity`` gets a bin of its own."""
    bins: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((b for b, free in enumerate(room) if lengths[index] <= free), None)
        if slot is None:
            bins.append([index])
            room.append(capacity - lengths[index])
        else:
            bins[slot].append(index)
            room[slot] -= lengths[index]
    return bins


def pack_sequences(sequences: list[list[int]], capacity: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """``input_ids``, ``position_ids`` and ``sequence_ids`` (each token's index in ``sequences``, -1
    on padding), all ``(rows, width)``, plus ``segments``: every sequence's ``(row, start)``, a
    ``(len(sequences), 2)`` tensor. Trailing padding forms a segment of its own (positions restart
    there too), so it never attends to real tokens."""
    bins = first_fit_decreasing([len(s) for s in sequences], capacity)
    width = max(sum(len(sequences[i]) for i in members) for members in bins)
    input_ids = torch.full((len(bins), width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros_like(input_ids)
    sequence_ids = torch.full_like(input_ids, -1)
    segments = torch.zeros(len(sequences), 2, dtype=torch.long)
    for row, members in enumerate(bins):
        start = 0
        for index in members:
            n = len(sequences[index])
            input_ids[row, start : start + n] = torch.tensor(sequences[index])
            position_ids[row, start : start + n] = torch.arange(n)
            sequence_ids[row, start : start + n] = index
            segments[index] = torch.tensor([row, start])
            start += n
        position_ids[row, start:] = torch.arange(width - start)
    return {"input_ids": input_ids, "position_ids": position_ids, "sequence_ids": sequence_ids, "segments": segments}

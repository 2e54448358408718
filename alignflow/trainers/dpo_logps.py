"""Sequence log-probs of preference pairs, under the policy and under the reference.

A pair's chosen and rejected rows go through the model in one forward (chosen rows first, then
rejected, right-padded); a response's log-prob is the sum over its own tokens (EOS included,
prompt and padding masked), with the output layer applied only at those positions. Results are
``(pairs, 2)`` tensors: column 0 chosen, column 1 rejected.

The reference is either

* ``CachedReference``: the starting policy's log-probs, computed once before the first update and
  stored in the run folder, keyed by a fingerprint of the model config and the token ids, so a
  resumed run reads them back instead of recomputing (and never scores with trained weights). On
  several ranks each scores its share of the pairs with its full, not yet sharded, model and the
  ranks exchange the results; or
* ``AdapterReference``: the LoRA policy with its adapters switched off, run on the fly; that *is*
  the starting model, so no copy of the weights and no cache are needed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from rich.console import Console

from alignflow.data.tokenize import Encoded
from alignflow.models.forward import labelled_token_logprobs, shared_prefix_logprobs
from alignflow.models.shared_prefix import pack_shared_prefix
from alignflow.runtime import autocast, distributed
from alignflow.trainers.data_parallel import run_forward
from alignflow.trainers.sft import collate_sft, collate_sft_packed

Pair = tuple[Encoded, Encoded]
REFERENCE_FILE = "reference_logps.pt"


def pair_logps(model, pairs: Sequence[Pair], pad_token_id: int, dtype: str,
               capacity: int | None = None, share_prompt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs ``(pairs, 2)`` fp32 (differentiable) and response token counts
    ``(pairs, 2)``, from one forward over the chosen rows and the rejected rows: right-padded, or
    with a ``capacity`` packed into rows of at most that many tokens (``data.packing``). ``model``: a
    causal LM or the trainer's ``ForwardRoot`` over one.

    ``share_prompt`` (``data.share_prompt``): each pair's prompt (and any first response tokens
    chosen and rejected have in common) runs once, followed by both responses under a block mask
    (``alignflow.models.shared_prefix``); pairs are packed into rows of ``capacity`` tokens, one
    pair a row without one. The same sums, without computing the prompt twice."""
    if share_prompt:
        pack = pack_shared_prefix([[c.input_ids, r.input_ids] for c, r in pairs], capacity or 0, pad_token_id)
        starts = [len(e.prompt_ids) for pair in pairs for e in pair]
        with autocast(dtype):
            sums, counts = run_forward(model, shared_prefix_logprobs, pack, starts)
        return sums.view(-1, 2), counts.view(-1, 2)
    # The SFT collators label exactly the response tokens, which is the DPO mask too.
    rows = [c for c, _ in pairs] + [r for _, r in pairs]
    batch = collate_sft(rows, pad_token_id) if capacity is None else collate_sft_packed(rows, pad_token_id, capacity)
    with autocast(dtype):
        sums, counts = run_forward(model, labelled_token_logprobs, batch["input_ids"], batch["attention_mask"],
                                   batch["labels"], position_ids=batch["position_ids"],
                                   sequence_ids=batch["sequence_ids"])
    return sums.view(2, -1).T, counts.view(2, -1).T


@torch.no_grad()
def batched_pair_logps(
    model, pairs: Sequence[Pair], *, batch_size: int, pad_token_id: int, dtype: str, capacity: int | None = None,
    share_prompt: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pair_logps`` over many pairs, without gradients and in eval mode, in the order given.

    Pairs are batched shortest first, so a batch pads little; the model's mode is restored.
    """
    logps = torch.empty(len(pairs), 2)
    counts = torch.zeros(len(pairs), 2, dtype=torch.long)
    order = sorted(range(len(pairs)), key=lambda i: max(len(pairs[i][0].input_ids), len(pairs[i][1].input_ids)))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            logps[idx], counts[idx] = pair_logps(model, [pairs[i] for i in idx], pad_token_id, dtype, capacity,
                                                 share_prompt)
    finally:
        model.train(was_training)
    return logps, counts


class Reference(Protocol):
    def logps(self, split: str, indices: Sequence[int]) -> torch.Tensor:
        """Reference log-probs ``(len(indices), 2)`` of the pairs of ``split`` at ``indices``."""
        ...


class CachedReference:
    """Precomputed reference log-probs per split (``(pairs, 2)``; NaN where a pair was never needed)."""

    def __init__(self, logps: dict[str, torch.Tensor]) -> None:
        self.splits = logps

    def logps(self, split: str, indices: Sequence[int]) -> torch.Tensor:
        out = self.splits[split][list(indices)]
        if torch.isnan(out).any():  # a pair outside the precomputed plan: a bug, not a data problem
            raise RuntimeError(f"no cached reference log-probs for some {split} pairs {list(indices)[:8]}")
        return out


class AdapterReference:
    """The LoRA policy with its adapters off, computed on the fly for the requested pairs."""

    def __init__(self, model, pairs: dict[str, Sequence[Pair]], *, batch_size: int, pad_token_id: int,
                 dtype: str, capacity: int | None = None, share_prompt: bool = False) -> None:
        if not hasattr(model, "disable_adapter"):
            raise ValueError("an adapter reference needs a LoRA (peft) model")
        self.model, self.pairs = model, pairs
        self.batch_size, self.pad_token_id, self.dtype, self.capacity = batch_size, pad_token_id, dtype, capacity
        self.share_prompt = share_prompt

    def logps(self, split: str, indices: Sequence[int]) -> torch.Tensor:
        with self.model.disable_adapter():
            logps, _ = batched_pair_logps(self.model, [self.pairs[split][i] for i in indices],
                                          batch_size=self.batch_size, pad_token_id=self.pad_token_id,
                                          dtype=self.dtype, capacity=self.capacity,
                                          share_prompt=self.share_prompt)
        return logps


def reference_fingerprint(model_config: dict, splits: dict[str, Sequence[Pair]]) -> str:
    """Changes whenever the model settings or any token id (or prompt/response boundary) does."""
    digest = hashlib.sha256(json.dumps(model_config, sort_keys=True, default=str).encode())
    for name in sorted(splits):
        digest.update(name.encode())
        for chosen, rejected in splits[name]:
            digest.update(json.dumps([chosen.prompt_ids, chosen.response_ids, rejected.prompt_ids,
                                      rejected.response_ids]).encode())
    return digest.hexdigest()


def cached_reference(
    model,
    splits: dict[str, Sequence[Pair]],
    needed: dict[str, Sequence[int]],
    *,
    path: Path,
    fingerprint: str,
    reuse: bool,
    batch_size: int,
    pad_token_id: int,
    dtype: str,
    console: Console,
    capacity: int | None = None,
    share_prompt: bool = False,
) -> CachedReference:
    """Reference log-probs of the ``needed`` pairs of each split, scored by ``model`` as it is now.

    Call this before any update (and before a checkpoint is restored or the model sharded): ``model``
    must be the starting policy. With ``reuse``, values stored in ``path`` under the same
    ``fingerprint`` are read back and only the missing pairs are scored (a resumed run with more
    steps needs more). On several ranks every rank calls this; rank 0 writes ``path``.
    """
    stored: dict[str, torch.Tensor] = {}
    if reuse and path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") == fingerprint:
            stored = saved["logps"]
        else:
            console.print(f"[yellow]{path} was computed for another model or data; recomputing it[/]")
    logps: dict[str, torch.Tensor] = {}
    missing_total, started = 0, time.perf_counter()
    for name, pairs in splits.items():
        values = stored.get(name, torch.full((len(pairs), 2), float("nan"))).clone()
        missing = [i for i in needed[name] if torch.isnan(values[i]).any()]
        if missing:
            mine = missing[distributed.rank() :: distributed.world_size()]
            scored, _ = batched_pair_logps(model, [pairs[i] for i in mine], batch_size=batch_size,
                                           pad_token_id=pad_token_id, dtype=dtype, capacity=capacity,
                                           share_prompt=share_prompt)
            for indices, part in all_gather((mine, scored)):
                values[indices] = part
            missing_total += len(missing)
        logps[name] = values
    if missing_total and distributed.rank() == 0:
        staging = path.with_suffix(".tmp")
        torch.save({"fingerprint": fingerprint, "logps": logps}, staging)
        staging.replace(path)  # never a half-written cache
        console.print(f"reference log-probs of {missing_total} pairs computed in "
                      f"{time.perf_counter() - started:.0f}s, cached in {path}")
    elif not missing_total:
        console.print(f"reference log-probs read from {path}")
    return CachedReference(logps)


def all_gather(item: tuple[list[int], torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """Every rank's ``item`` (this one's alone without a process group)."""
    if distributed.world_size() == 1:
        return [item]
    gathered: list = [None] * distributed.world_size()
    dist.all_gather_object(gathered, item)
    return gathered

"""The rollout-engine interface: sampling settings and what ``generate`` returns.

An engine turns token-id prompts into a :class:`~alignflow.batch.Batch` with these tensors
(``B`` = number of prompts x ``params.n``, ``P`` = longest prompt, ``R`` = longest response)::

    prompt_ids        (B, P) long   left-padded with the engine's pad id
    prompt_mask       (B, P) long   1 on prompt tokens, 0 on padding
    response_ids      (B, R) long   right-padded with the pad id
    response_mask     (B, R) long   1 on generated tokens up to and including the first EOS
                                    (or the token that completes a stop string), 0 after
    sampling_logprobs (B, R) float  log-prob of each generated token under the distribution it was
                                    drawn from (after repetition penalty, no-repeat n-gram ban,
                                    temperature, top-k, top-p); 0 where response_mask is 0
    has_eos           (B,)   bool   the response ended with an EOS token

Merged from several ranks (:func:`align_widths`), ``P`` and ``R`` are the widest shard's and the
extra padding holds 0 (ids under a 0 mask are never read).

``meta["prompt_index"]`` gives the index of the prompt each row was generated from: with
``n > 1`` every prompt's rows are consecutive (``[0, 0, 1, 1, ...]``). ``info`` holds
``generation_time_s``, ``generated_tokens`` (sum of ``response_mask``) and ``sampling_params``.

Weights: an engine samples from the weights it was last given; ``generate`` never refreshes them.
The controller's explicit, timed ``sync_rollout_weights`` step (the policy worker's method, once
after each actor update) calls :meth:`RolloutEngine.update_weights` with the actor's gathered
weights. The HF engine built on the actor's own module (one unsharded rank, ``rollout.weights:
shared``) needs no sync at all; its bf16/fp32 copies and the vLLM engine load the tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from alignflow.batch import Batch


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off; CTRL-style (> 1 discourages repeats)
    no_repeat_ngram_size: int = 0  # 0 = off; n > 0 bans any token that would repeat an n-gram
    do_sample: bool = True  # False = greedy; temperature/top-k/top-p are then ignored
    stop_strings: tuple[str, ...] = ()
    n: int = 1  # samples per prompt
    seed: int | None = None  # None = draw from torch's global RNG

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        if self.do_sample and not self.temperature > 0:
            raise ValueError(
                f"temperature must be > 0 when sampling, got {self.temperature} (use do_sample=False for greedy)"
            )
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if not isinstance(self.no_repeat_ngram_size, int) or self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be an int >= 0 (0 = off), got {self.no_repeat_ngram_size!r}")
        if isinstance(self.stop_strings, str):
            raise ValueError(f"stop_strings must be a tuple of strings, got the string {self.stop_strings!r}")
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {self.stop_strings!r}")
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n (samples per prompt) must be an int >= 1, got {self.n!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int or None, got {self.seed!r}")


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Batch:
        """Sample ``params.n`` responses per prompt; see the module docstring for the returned batch."""
        ...

    def update_weights(self, weights: nn.Module | Mapping[str, torch.Tensor]) -> None:
        """Make the next ``generate`` use ``weights`` (a module or its ``state_dict``)."""
        ...


# Rollout tensors padded on the left (prompts end where responses start) and on the right.
LEFT_PADDED = ("prompt_ids", "prompt_mask")
RIGHT_PADDED = ("response_ids", "response_mask", "sampling_logprobs", "old_logprobs", "ref_logprobs", "entropy",
                "values", "kl", "token_rewards", "advantages", "returns")


def align_widths(batches: list[Batch]) -> list[Batch]:
    """Shards of one rollout (e.g. from several ranks) padded with 0 to the widest prompt and
    response, so they concatenate: prompt tensors on the left, per-token tensors on the right."""
    out = []
    for batch in batches:
        tensors = dict(batch.tensors)
        for keys, left in ((LEFT_PADDED, True), (RIGHT_PADDED, False)):
            for key in keys:
                if key in tensors:
                    width = max(b.tensors[key].shape[1] for b in batches)
                    missing = width - tensors[key].shape[1]
                    tensors[key] = torch.nn.functional.pad(tensors[key], (missing, 0) if left else (0, missing))
        out.append(Batch(tensors=tensors, meta=batch.meta, info=batch.info))
    return out

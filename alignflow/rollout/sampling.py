"""Pure logits processors and the next-token sampler used by the rollout engines.

Order, as in Hugging Face ``generate``: repetition penalty, no-repeat n-gram ban, then (only when
sampling) temperature, top-k, top-p. Filtered-out tokens get ``-inf`` so that softmax gives them 0.
"""

from __future__ import annotations

import hashlib

import torch

from alignflow.rollout.base import SamplingParams


def apply_repetition_penalty(
    logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float, previous_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """CTRL-style penalty on every token already present in ``previous_ids``.

    logits (B, V); previous_ids (B, L); previous_mask (B, L), 0 on pads (ignored), None = all 1.
    A present token's logit is divided by ``penalty`` when positive and multiplied when negative,
    so ``penalty > 1`` always makes it less likely.
    """
    if penalty == 1.0:
        return logits
    weights = (
        torch.ones_like(previous_ids, dtype=logits.dtype) if previous_mask is None else previous_mask.to(logits.dtype)
    )
    # scatter_add, not scatter: a token seen both as a real token and as a pad must count as present
    counts = torch.zeros_like(logits).scatter_add_(1, previous_ids, weights)
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(counts > 0, penalized, logits)


def apply_no_repeat_ngram(
    logits: torch.Tensor, previous_ids: torch.Tensor, n: int, previous_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Ban (``-inf``) every token that would complete an n-gram already present in ``previous_ids``.

    logits (B, V); previous_ids (B, L); previous_mask (B, L), 0 on pads, None = all 1. As in
    Hugging Face's ``no_repeat_ngram_size``, the prompt counts; n-grams that touch a pad do not.
    ``n = 0`` = off; ``n = 1`` bans every token seen so far.
    """
    length = previous_ids.shape[1]
    if n == 0 or length < n:
        return logits
    real = torch.ones_like(previous_ids, dtype=torch.bool) if previous_mask is None else previous_mask.bool()
    windows = previous_ids.unfold(1, n, 1)  # (B, L - n + 1, n): every n-gram
    complete = real.unfold(1, n, 1).all(-1)
    context, context_real = previous_ids[:, length - n + 1 :], real[:, length - n + 1 :].all(-1)  # last n-1 tokens
    match = (windows[:, :, :-1] == context[:, None, :]).all(-1) & complete & context_real[:, None]
    # scatter_add, not scatter: several windows may name the same banned token.
    hits = torch.zeros_like(logits).scatter_add_(1, windows[:, :, -1], match.to(logits.dtype))
    return logits.masked_fill(hits > 0, float("-inf"))


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits per row (ties with the k-th are kept); ``k = 0`` = off. logits (B, V)."""
    if k == 0 or k >= logits.shape[-1]:
        return logits
    kth_largest = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens whose total probability first reaches ``p``.

    logits (B, V). The most likely token is always kept; ``p = 1`` = off.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the strictly more likely tokens
    remove_sorted = mass_before >= p
    remove = remove_sorted.scatter(1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def process_logits(
    logits: torch.Tensor,
    params: SamplingParams,
    previous_ids: torch.Tensor | None = None,
    previous_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Next-token logits (B, V) -> the logits actually sampled from, in float32.

    previous_ids/previous_mask (B, L): prompt + response so far, for the repetition penalty and the
    no-repeat n-gram ban.
    Greedy decoding (``do_sample=False``) skips temperature/top-k/top-p: they cannot change the
    argmax, and the reported log-prob is then under the temperature-1 distribution.
    """
    logits = logits.float()
    if params.repetition_penalty != 1.0:
        if previous_ids is None:
            raise ValueError("repetition_penalty != 1 needs previous_ids")
        logits = apply_repetition_penalty(logits, previous_ids, params.repetition_penalty, previous_mask)
    if params.no_repeat_ngram_size:
        if previous_ids is None:
            raise ValueError("no_repeat_ngram_size > 0 needs previous_ids")
        logits = apply_no_repeat_ngram(logits, previous_ids, params.no_repeat_ngram_size, previous_mask)
    if not params.do_sample:
        return logits
    if params.temperature != 1.0:
        logits = logits / params.temperature
    logits = apply_top_k(logits, params.top_k)
    return apply_top_p(logits, params.top_p)


def seed_for(*parts: int) -> int:
    """A 63-bit seed that depends on every part (``seed_for(run_seed, prompt, sample)``): the
    samples a prompt gets never depend on which other prompts share its batch or its rank."""
    digest = hashlib.blake2b(":".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def row_generators(seeds: list[int], device: torch.device) -> list[torch.Generator]:
    """One generator per row, seeded with ``seeds``."""
    return [torch.Generator(device=device).manual_seed(seed) for seed in seeds]


def draw_uniforms(generators: list[torch.Generator] | None, rows: int, device: torch.device) -> torch.Tensor:
    """``(rows, 1)`` fp32 uniforms: one from each row's generator, or from torch's global RNG."""
    if generators is None:
        return torch.rand(rows, 1, device=device)
    return torch.cat([torch.rand(1, generator=g, device=device) for g in generators])[:, None]


def sample_next_token(
    processed_logits: torch.Tensor, uniform: torch.Tensor | None, do_sample: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row. processed_logits (B, V), uniform (B, 1) in [0, 1) -> token (B,)
    long, logprob (B,) float. Greedy (``do_sample=False``) needs no uniforms.

    ``logprob`` is the log-softmax of ``processed_logits`` at the chosen token.
    """
    logprobs = processed_logits.log_softmax(dim=-1)
    if do_sample:
        # Inverse-CDF sampling: one uniform per row. ``torch.multinomial`` draws an exponential per
        # vocabulary entry instead (49k for SmolLM2), which made it ~10% of a CPU decode step.
        cdf = logprobs.exp().cumsum(dim=-1)
        # right=True: a token of zero probability (a flat step of the CDF) can never be drawn.
        token = torch.searchsorted(cdf, uniform.to(cdf.dtype) * cdf[:, -1:], right=True).squeeze(1)
        token = token.clamp_(max=cdf.shape[-1] - 1)
    else:
        token = logprobs.argmax(dim=-1)
    return token, logprobs.gather(1, token[:, None]).squeeze(1)

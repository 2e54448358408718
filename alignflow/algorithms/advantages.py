"""Advantage estimators, chosen by name.

Every estimator has the same keyword-only signature so that the trainer calls any of them alike::

    advantages, returns = get_advantage_estimator(name)(
        token_rewards=...,   # (batch, response_len) float, KL penalty / score already inside
        values=...,          # (batch, response_len) critic values, or None for critic-free ones
        response_mask=...,   # (batch, response_len) 1 on real response tokens
        group_ids=...,       # (batch,) int tensor or list of hashables (same prompt, same id); or None
        gamma=..., lam=...,  # discount and GAE lambda (ignored by estimators that do not use them)
        **options,           # estimator-specific switches; unknown ones are ignored
    )

Both outputs are ``(batch, response_len)`` and exactly 0 on masked positions. Outcome-level
estimators (GRPO, RLOO, REINFORCE++-baseline) return ``returns = advantages`` because there is
no critic to regress on it.

Padding may sit anywhere (also in the middle, for multi-turn masks): the recursions skip masked
positions, so the next *valid* token is "the next step". A response without EOS (cut at max
length) is treated as terminal, i.e. it bootstraps from 0, like the other RLHF implementations.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch

from alignflow.algorithms.masking import masked_sum, masked_whiten
from alignflow.algorithms.registry import Registry

AdvantageEstimator = Callable[..., tuple[torch.Tensor, torch.Tensor]]

ADVANTAGE_ESTIMATORS: Registry[AdvantageEstimator] = Registry("advantage estimator")
register_advantage_estimator = ADVANTAGE_ESTIMATORS.register


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """The estimator registered as ``name`` (``KeyError`` listing valid names otherwise)."""
    return ADVANTAGE_ESTIMATORS.get(name)


# ----------------------------------------------------------------------------- helpers


def discounted_returns(
    token_rewards: torch.Tensor, response_mask: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Return-to-go ``G_t = r_t + gamma * G_{t+1}`` over valid positions (0 on masked ones).

    Args:
        token_rewards: ``(batch, response_len)``.
        response_mask: ``(batch, response_len)``.
    Returns ``(batch, response_len)``. Reference: Sutton & Barto, "Reinforcement Learning", 3.3.
    """
    mask = response_mask.to(torch.bool)
    rewards = torch.where(mask, token_rewards, torch.zeros_like(token_rewards))
    running = torch.zeros_like(rewards[:, 0])
    out = torch.zeros_like(rewards)
    for t in reversed(range(rewards.shape[1])):
        # At a masked position keep the running return untouched, so it skips the gap.
        running = torch.where(mask[:, t], rewards[:, t] + gamma * running, running)
        out[:, t] = running
    return torch.where(mask, out, torch.zeros_like(out))


def _group_index(
    group_ids: torch.Tensor | Sequence[Hashable] | None,
    scores: torch.Tensor,
    estimator: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense group index ``(batch,)`` and per-group sizes; errors on missing ids or size-1 groups.

    ``group_ids`` is an integer tensor or any sequence of hashables (e.g. prompt uid strings).
    """
    if group_ids is None:
        raise ValueError(f"advantage estimator {estimator!r} needs group_ids (one id per prompt)")
    batch = scores.shape[0]
    if not isinstance(group_ids, torch.Tensor):
        ids = list(group_ids)
        dense: dict[Hashable, int] = {}
        group_ids = torch.tensor([dense.setdefault(g, len(dense)) for g in ids], dtype=torch.long)
    if group_ids.shape != (batch,):
        raise ValueError(f"group_ids must have shape ({batch},), got {tuple(group_ids.shape)}")
    _, index = torch.unique(group_ids.to(scores.device), return_inverse=True)
    sizes = torch.bincount(index)
    if (sizes < 2).any():
        # A lone sample has no baseline to compare with; its advantage would be meaningless.
        raise ValueError(
            f"advantage estimator {estimator!r} needs at least 2 samples per prompt "
            f"(n_samples_per_prompt >= 2); got group sizes {sorted(set(sizes.tolist()))}"
        )
    return index, sizes


def _group_stats(
    scores: torch.Tensor, index: torch.Tensor, sizes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample group sum, unbiased group std and a 'group is constant' flag, all ``(batch,)``."""
    n_groups = sizes.shape[0]
    sums = torch.zeros(n_groups, dtype=scores.dtype, device=scores.device).index_add_(0, index, scores)
    n = sizes.to(scores.dtype)
    mean = sums / n
    dev = scores - mean[index]
    sq = torch.zeros_like(sums).index_add_(0, index, dev * dev)
    std = torch.sqrt(sq / (n - 1))
    # Exact equality test: a mean of identical floats need not equal them bit for bit, so
    # "score - mean" can be 1e-9 and "/ (std + eps)" would turn rounding noise into advantage.
    gmax = torch.full_like(sums, -torch.inf).scatter_reduce(0, index, scores, "amax")
    gmin = torch.full_like(sums, torch.inf).scatter_reduce(0, index, scores, "amin")
    constant = (gmax == gmin)[index]
    return sums[index], std[index], constant


def _sequence_scores(token_rewards: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Outcome reward per sequence ``(batch,)``: sum of its token rewards over the response."""
    return masked_sum(token_rewards, response_mask, dim=-1)


def _broadcast(per_seq: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``(batch,)`` -> ``(batch, response_len)`` on valid positions, 0 elsewhere."""
    full = per_seq.unsqueeze(-1).expand(response_mask.shape)
    return torch.where(response_mask.to(torch.bool), full, torch.zeros_like(full))


# ----------------------------------------------------------------------------- estimators


@register_advantage_estimator("gae")
@torch.no_grad()
def gae_advantages(
    *,
    token_rewards: torch.Tensor,
    values: torch.Tensor | None,
    response_mask: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten_advantages: bool = True,
    **options,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation with a critic.

    Schulman et al. 2016, "High-Dimensional Continuous Control Using GAE", eq. 16:
    ``delta_t = r_t + gamma V_{t+1} - V_t``, ``A_t = delta_t + gamma lam A_{t+1}``.
    ``returns = A + V`` (the lambda-return, the critic's target) is computed *before* whitening,
    which then (option ``whiten_advantages``, default on) normalises A over the batch's valid
    tokens, as in Ziegler et al. 2019.

    Args:
        token_rewards, values, response_mask: ``(batch, response_len)``.
        group_ids: ignored.
    Returns ``(advantages, returns)``, each ``(batch, response_len)``.
    """
    if values is None:
        raise ValueError("advantage estimator 'gae' needs critic values")
    mask = response_mask.to(torch.bool)
    zeros = torch.zeros_like(token_rewards)
    rewards = torch.where(mask, token_rewards, zeros)
    values = torch.where(mask, values.to(token_rewards.dtype), zeros)
    next_value = torch.zeros_like(rewards[:, 0])  # V after the last valid token: terminal, 0
    next_adv = torch.zeros_like(rewards[:, 0])
    advantages = torch.zeros_like(rewards)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * next_adv
        # Masked steps carry the next valid step's value/advantage through unchanged.
        next_adv = torch.where(mask[:, t], adv_t, next_adv)
        next_value = torch.where(mask[:, t], values[:, t], next_value)
        advantages[:, t] = next_adv
    advantages = torch.where(mask, advantages, zeros)
    returns = advantages + values  # values are already 0 where masked
    if whiten_advantages:
        advantages = masked_whiten(advantages, mask)
    return advantages, returns


@register_advantage_estimator("grpo")
@torch.no_grad()
def grpo_advantages(
    *,
    token_rewards: torch.Tensor,
    values: torch.Tensor | None = None,
    response_mask: torch.Tensor,
    group_ids: torch.Tensor | None,
    gamma: float = 1.0,
    lam: float = 1.0,
    norm_by_std: bool = True,
    eps: float = 1e-6,
    **options,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative outcome advantage.

    Shao et al. 2024, "DeepSeekMath" (GRPO): ``A_i = (R_i - mean_g R) / (std_g R + eps)`` with
    ``R_i`` the sum of sequence i's token rewards and the (unbiased) std over its group, the same
    value on every response token. ``norm_by_std=False`` gives Dr. GRPO (Liu et al. 2025,
    "Understanding R1-Zero-Like Training"), which drops the std to avoid weighting easy/hard
    prompts up. Groups whose rewards are all equal get exactly 0 (never NaN).

    Args:
        token_rewards, response_mask: ``(batch, response_len)``; group_ids: ``(batch,)``.
        values, gamma, lam: ignored.
    Returns ``(advantages, returns)``, each ``(batch, response_len)``, ``returns = advantages``.
    """
    scores = _sequence_scores(token_rewards, response_mask)
    index, sizes = _group_index(group_ids, scores, "grpo")
    sums, std, constant = _group_stats(scores, index, sizes)
    adv = scores - sums / sizes[index].to(scores.dtype)
    if norm_by_std:
        adv = adv / (std + eps)
    adv = torch.where(constant, torch.zeros_like(adv), adv)
    advantages = _broadcast(adv, response_mask)
    return advantages, advantages.clone()


@register_advantage_estimator("rloo")
@torch.no_grad()
def rloo_advantages(
    *,
    token_rewards: torch.Tensor,
    values: torch.Tensor | None = None,
    response_mask: torch.Tensor,
    group_ids: torch.Tensor | None,
    gamma: float = 1.0,
    lam: float = 1.0,
    **options,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE with a leave-one-out baseline.

    Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization" (RLOO):
    ``A_i = R_i - (sum_{j in g, j != i} R_j) / (n_g - 1)``, broadcast over response tokens.
    The baseline excludes sample i, so it is independent of i's own action: unbiased.

    Args:
        token_rewards, response_mask: ``(batch, response_len)``; group_ids: ``(batch,)``.
        values, gamma, lam: ignored.
    Returns ``(advantages, returns)``, each ``(batch, response_len)``, ``returns = advantages``.
    """
    scores = _sequence_scores(token_rewards, response_mask)
    index, sizes = _group_index(group_ids, scores, "rloo")
    sums, _, constant = _group_stats(scores, index, sizes)
    baseline = (sums - scores) / (sizes[index].to(scores.dtype) - 1)
    adv = torch.where(constant, torch.zeros_like(scores), scores - baseline)
    advantages = _broadcast(adv, response_mask)
    return advantages, advantages.clone()


@register_advantage_estimator("reinforce_pp")
@torch.no_grad()
def reinforce_pp_advantages(
    *,
    token_rewards: torch.Tensor,
    values: torch.Tensor | None = None,
    response_mask: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 1.0,
    **options,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++: discounted return-to-go of the token rewards, whitened over the whole batch.

    Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning LLMs". The per-token KL
    penalty must already be inside ``token_rewards`` (see ``rewards.kl_penalized_token_rewards``);
    global (batch, not group) whitening is the baseline.

    Args:
        token_rewards, response_mask: ``(batch, response_len)``.
        values, group_ids, lam: ignored.
    Returns ``(advantages, returns)``: whitened and raw return-to-go, ``(batch, response_len)``.
    """
    returns = discounted_returns(token_rewards, response_mask, gamma)
    advantages = masked_whiten(returns, response_mask)
    return advantages, returns


@register_advantage_estimator("reinforce_pp_baseline")
@torch.no_grad()
def reinforce_pp_baseline_advantages(
    *,
    token_rewards: torch.Tensor,
    values: torch.Tensor | None = None,
    response_mask: torch.Tensor,
    group_ids: torch.Tensor | None,
    gamma: float = 1.0,
    lam: float = 1.0,
    **options,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++-baseline: subtract the group-mean outcome reward, then whiten over the batch.

    Hu 2025, "REINFORCE++" (the variant for multi-sample prompts): ``A_i = R_i - mean_g R``
    broadcast over tokens, then masked whitening over all valid tokens of the batch.

    Args:
        token_rewards, response_mask: ``(batch, response_len)``; group_ids: ``(batch,)``.
        values, gamma, lam: ignored.
    Returns ``(advantages, returns)``, each ``(batch, response_len)``, ``returns = advantages``.
    """
    scores = _sequence_scores(token_rewards, response_mask)
    index, sizes = _group_index(group_ids, scores, "reinforce_pp_baseline")
    sums, _, constant = _group_stats(scores, index, sizes)
    centred = scores - sums / sizes[index].to(scores.dtype)
    centred = torch.where(constant, torch.zeros_like(centred), centred)
    advantages = masked_whiten(_broadcast(centred, response_mask), response_mask)
    return advantages, advantages.clone()

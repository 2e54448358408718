"""Truncated importance sampling (TIS) between the rollout engine's policy and the trained one.

The rollout copy (int8, bf16) samples from a slightly different distribution than the actor whose
gradient is taken, so a "PPO on-policy" batch is in fact off-policy. Each response token's
policy-gradient loss is weighted by ``min(pi_actor / pi_rollout, C)``: the importance ratio
between the behaviour log-probs the actor recomputes and the log-probs the sampler drew with,
truncated at ``C`` so that a token the sampler rated far too low cannot dominate the step (Yao et
al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"; verl's TIS).
"""

from __future__ import annotations

import math

import torch

from alignflow.algorithms.masking import masked_mean


def truncated_is_weights(old_logprobs: torch.Tensor, sampling_logprobs: torch.Tensor, mask: torch.Tensor,
                         cap: float | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token weights ``min(exp(old_logprobs - sampling_logprobs), cap)``, detached, 0 on padding.

    Args:
        old_logprobs: ``(B, R)`` the actor's (behaviour) log-probs of the sampled tokens.
        sampling_logprobs: ``(B, R)`` the log-probs the rollout engine sampled them with.
        mask: ``(B, R)`` 1 on response tokens.
        cap: the truncation ``C >= 1``; ``None``: no correction (weights 1 on every token).
    Returns ``(weights, stats)``; ``stats`` (masked means over response tokens, empty when
    ``cap`` is None): ``capped_fraction`` (tokens whose ratio exceeded ``cap``), ``weight_mean``.
    """
    mask = mask.bool()
    if cap is None:
        return mask.to(old_logprobs.dtype), {}
    if cap < 1:
        raise ValueError(f"the importance-sampling cap must be >= 1, got {cap}")
    with torch.no_grad():
        log_ratio = old_logprobs.detach().float() - sampling_logprobs.detach().float()
        log_cap = math.log(cap)
        # Clamped in log space: exp() of a large gap would overflow before the min.
        weights = torch.where(mask, log_ratio.clamp(max=log_cap).exp(), 0.0)
        stats = {"capped_fraction": masked_mean((log_ratio > log_cap).float(), mask),
                 "weight_mean": masked_mean(weights, mask)}
    return weights, stats

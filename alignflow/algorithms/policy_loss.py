"""Policy-gradient losses (chosen by name) and loss aggregation over tokens and sequences.

A policy loss has the keyword-only signature::

    loss, metrics = get_policy_loss(name)(
        logprobs=...,       # (batch, response_len) log pi_theta(a_t), with grad
        old_logprobs=...,   # (batch, response_len) log pi_old(a_t) from rollout time
        advantages=...,     # (batch, response_len)
        response_mask=...,  # (batch, response_len)
        loss_agg_mode="token-mean",
        **options,          # loss-specific; unknown ones are ignored
    )

``metrics`` values are detached 0-dim tensors (call ``.item()`` when logging; keeping them as
tensors avoids a device sync per micro-batch).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from alignflow.algorithms.masking import masked_mean, masked_sum
from alignflow.algorithms.registry import Registry

# ----------------------------------------------------------------------------- aggregation

LossAggregation = Callable[..., torch.Tensor]
LOSS_AGGREGATIONS: Registry[LossAggregation] = Registry("loss aggregation mode")
register_loss_aggregation = LOSS_AGGREGATIONS.register


@register_loss_aggregation("token-mean")
def _token_mean(loss_mat: torch.Tensor, mask: torch.Tensor, norm_const: float | None) -> torch.Tensor:
    # Every valid token weighs the same, so long responses weigh more (DAPO, Yu et al. 2025).
    return masked_mean(loss_mat, mask)


@register_loss_aggregation("seq-mean-token-sum")
def _seq_mean_token_sum(loss_mat: torch.Tensor, mask: torch.Tensor, norm_const: float | None) -> torch.Tensor:
    return masked_sum(loss_mat, mask, dim=-1).mean()


@register_loss_aggregation("seq-mean-token-mean")
def _seq_mean_token_mean(loss_mat: torch.Tensor, mask: torch.Tensor, norm_const: float | None) -> torch.Tensor:
    # Original GRPO: each sequence weighs the same. Empty sequences are left out of the mean
    # rather than counted as zero-loss sequences.
    per_seq = masked_mean(loss_mat, mask, dim=-1)
    nonempty = mask.to(torch.bool).any(dim=-1)
    return masked_mean(per_seq, nonempty)


@register_loss_aggregation("seq-mean-token-sum-norm")
def _seq_mean_token_sum_norm(loss_mat: torch.Tensor, mask: torch.Tensor, norm_const: float | None) -> torch.Tensor:
    # Dr. GRPO (Liu et al. 2025): divide each sequence's token sum by a *constant* (the generation
    # max length), not by its own length, which would favour long wrong answers.
    const = float(norm_const) if norm_const is not None else float(loss_mat.shape[-1])
    return masked_sum(loss_mat, mask, dim=-1).mean() / const


def aggregate_loss(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "token-mean",
    norm_const: float | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss ``(batch, response_len)`` to a scalar.

    Modes (``LOSS_AGGREGATIONS.names()``):
      * ``token-mean``: mean over all valid tokens of the batch.
      * ``seq-mean-token-sum``: sum over each sequence's tokens, mean over sequences.
      * ``seq-mean-token-mean``: mean over each sequence's tokens, mean over non-empty sequences.
      * ``seq-mean-token-sum-norm``: sum over each sequence's tokens / ``norm_const``, mean over
        sequences (Dr. GRPO; ``norm_const`` defaults to ``response_len``; pass the generation
        max length so the scale stays constant across batches).

    Args:
        loss_mat: ``(batch, response_len)``; mask: ``(batch, response_len)``.
    """
    return LOSS_AGGREGATIONS.get(mode)(loss_mat, mask, norm_const)


# ----------------------------------------------------------------------------- policy losses

PolicyLoss = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
POLICY_LOSSES: Registry[PolicyLoss] = Registry("policy loss")
register_policy_loss = POLICY_LOSSES.register

# See kl.py: keep exp() of the log-ratio finite; a ratio of e^20 is far outside any clip range.
_MAX_LOG_RATIO = 20.0


def get_policy_loss(name: str) -> PolicyLoss:
    """The policy loss registered as ``name`` (``KeyError`` listing valid names otherwise)."""
    return POLICY_LOSSES.get(name)


@register_policy_loss("ppo_clip")
def ppo_clip_loss(
    *,
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    clip_low: float = 0.2,
    clip_high: float | None = None,
    dual_clip: float | None = None,
    norm_const: float | None = None,
    is_weights: torch.Tensor | None = None,
    **options,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate, with asymmetric clipping and optional dual clip.

    Schulman et al. 2017, "Proximal Policy Optimization Algorithms", eq. 7:
    ``L = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))`` per token, ``r = pi / pi_old``.
    ``clip_high > clip_low`` is DAPO's clip-higher (Yu et al. 2025): it lets low-probability
    tokens with positive advantage grow further, fighting entropy collapse; ``None`` = symmetric.
    ``dual_clip = c > 1`` (Ye et al. 2020, "Mastering Complex Control in MOBA Games") also bounds
    the loss by ``-A c`` when ``A < 0``, so a huge ratio on a bad token cannot blow up the step.

    Args:
        logprobs, old_logprobs, advantages, response_mask: ``(batch, response_len)``.
        loss_agg_mode, norm_const: see ``aggregate_loss``.
        is_weights: ``(batch, response_len)`` detached per-token weights multiplying the loss
            before aggregation (truncated importance sampling, ``truncated_is_weights``); None = 1.
    Returns ``(loss, metrics)`` with metrics (masked means over valid tokens):
        ``clip_fraction``: fraction of tokens where the clipped term is strictly the larger one
        (its gradient is then 0); ``dual_clip_fraction`` (when dual clip is on);
        ``approx_kl``: k3 estimate of KL(pi_old || pi_theta), ``mean((r - 1) - log r)``, valid
        because the tokens were sampled from pi_old, unbiased and >= 0;
        ``ratio_mean``: mean of r.
    """
    if clip_high is None:
        clip_high = clip_low
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    log_ratio = (logprobs - old_logprobs).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss_mat = torch.maximum(unclipped, clipped)
    metrics: dict[str, torch.Tensor] = {}
    if dual_clip is not None:
        bound = -advantages * dual_clip
        dual_active = (advantages < 0) & (loss_mat > bound)
        loss_mat = torch.where(advantages < 0, torch.minimum(loss_mat, bound), loss_mat)
        metrics["dual_clip_fraction"] = masked_mean(dual_active.float(), response_mask).detach()
    if is_weights is not None:
        loss_mat = loss_mat * is_weights
    loss = aggregate_loss(loss_mat, response_mask, loss_agg_mode, norm_const)
    with torch.no_grad():
        metrics["clip_fraction"] = masked_mean((clipped > unclipped).float(), response_mask)
        metrics["approx_kl"] = masked_mean((ratio - 1.0) - log_ratio, response_mask)
        metrics["ratio_mean"] = masked_mean(ratio, response_mask)
    return loss, metrics

"""Critic loss and diagnostics.

Reference: the clipped value loss of OpenAI baselines' PPO2 (Dhariwal et al. 2017) as analysed in
Engstrom et al. 2020, "Implementation Matters in Deep RL" — written anew.
"""

from __future__ import annotations

import torch

from alignflow.algorithms.masking import masked_mean, masked_var
from alignflow.algorithms.policy_loss import aggregate_loss


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    response_mask: torch.Tensor,
    clip_eps: float | None = 0.2,
    loss_agg_mode: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``0.5 * max((v - R)^2, (clip(v, v_old - eps, v_old + eps) - R)^2)``, aggregated over tokens.

    Taking the max (pessimistic) keeps the critic from moving far from its rollout-time values in
    one update, mirroring the policy's trust region. ``clip_eps=None`` gives the plain MSE.

    Args:
        values: ``(batch, response_len)`` current critic output, with grad.
        old_values: ``(batch, response_len)`` critic output at rollout time.
        returns: ``(batch, response_len)`` targets (e.g. GAE lambda-returns).
        response_mask: ``(batch, response_len)``.
    Returns ``(loss, {"vf_clip_fraction": fraction of tokens where the clipped term is larger})``.
    """
    unclipped = (values - returns) ** 2
    if clip_eps is None:
        loss_mat = unclipped
        clip_frac = torch.zeros((), device=values.device)
    else:
        v_clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
        clipped = (v_clipped - returns) ** 2
        loss_mat = torch.maximum(unclipped, clipped)
        clip_frac = masked_mean((clipped > unclipped).float(), response_mask).detach()
    loss = 0.5 * aggregate_loss(loss_mat, response_mask, loss_agg_mode)
    return loss, {"vf_clip_fraction": clip_frac}


@torch.no_grad()
def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - Var[R - V] / Var[R]`` over valid tokens: 1 = perfect critic, 0 = no better than a constant.

    Args: ``values``, ``returns``, ``mask``: ``(batch, response_len)``.
    Returns a 0-dim tensor; NaN when the returns have zero variance (the ratio is undefined there),
    as in Stable-Baselines3's ``explained_variance``.
    """
    var_r = masked_var(returns, mask)
    var_res = masked_var(returns - values, mask)
    nan = torch.full_like(var_r, float("nan"))
    return torch.where(var_r > 0, 1.0 - var_res / torch.where(var_r > 0, var_r, torch.ones_like(var_r)), nan)

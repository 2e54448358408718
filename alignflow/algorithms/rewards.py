"""Turning sequence scores into per-token rewards for RL.

Reference: Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO: A Case Study on
TL;DR Summarization" (KL-penalised token rewards, missing-EOS penalty, reward whitening).
"""

from __future__ import annotations

import torch

from alignflow.algorithms.kl import kl_estimate
from alignflow.algorithms.masking import masked_whiten
from alignflow.algorithms.sequences import last_token_index


def kl_penalized_token_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    response_mask: torch.Tensor,
    kl_coef: float,
    kl_estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token reward ``-kl_coef * kl_t``, plus the sequence score at the last real token.

    The reward model scores the whole response, so its score is the reward of the final action;
    the KL penalty is charged on every token where it is incurred (Ziegler et al. 2019).

    Args:
        scores: ``(batch,)`` sequence-level rewards.
        logprobs, ref_logprobs: ``(batch, response_len)`` policy / reference log-probs of the
            sampled tokens.
        response_mask: ``(batch, response_len)``; every row needs at least one real token.
        kl_coef: penalty coefficient (e.g. an adaptive controller's ``value``).
        kl_estimator: name in ``kl.KL_ESTIMATORS`` (``k1``, ``k2``, ``k3``, ``abs``).
    Returns ``(token_rewards, kl)``, both ``(batch, response_len)`` and 0 on masked positions.
    """
    mask = response_mask.to(torch.bool)
    kl = kl_estimate(logprobs.float(), ref_logprobs.float(), kl_estimator)
    kl = torch.where(mask, kl, torch.zeros_like(kl))
    return -kl_coef * kl + score_token_rewards(scores, response_mask), kl


def score_token_rewards(scores: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``(batch, response_len)`` fp32 zeros except the sequence score at each last real token."""
    last = last_token_index(response_mask)
    if (last < 0).any():
        raise ValueError("a response has no real token (empty response_mask row); its score has nowhere to go")
    token_rewards = torch.zeros(response_mask.shape, dtype=torch.float32)
    return token_rewards.scatter_add(1, last.unsqueeze(-1), scores.float().unsqueeze(-1))


def apply_missing_eos_penalty(scores: torch.Tensor, has_eos: torch.Tensor, penalty_value: float) -> torch.Tensor:
    """Replace the score of every response without EOS by the constant ``penalty_value``.

    A truncated response was never finished, so the reward model's score of it is unreliable and
    rewarding it teaches the policy to ramble up to the length limit (Huang et al. 2024, detail 23).

    Args: ``scores``: ``(batch,)``; ``has_eos``: ``(batch,)`` bool. Returns ``(batch,)``.
    """
    return torch.where(has_eos.to(torch.bool), scores, torch.full_like(scores, float(penalty_value)))


def whiten_rewards(token_rewards: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Scale token rewards to unit variance over valid tokens, keeping their mean (and sign).

    Args: ``token_rewards``, ``response_mask``: ``(batch, response_len)``.
    """
    return masked_whiten(token_rewards, response_mask, shift_mean=False)

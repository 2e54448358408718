"""Pairwise preference losses and metrics: reward-model training and the DPO family.

Conventions: ``r_chosen`` / ``r_rejected`` are ``(batch,)`` scalar rewards of the preferred and
the dispreferred response of each pair. Metric dicts hold detached 0-dim tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from alignflow.algorithms.registry import Registry

# ----------------------------------------------------------------------------- reward models


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | float | None = None
) -> torch.Tensor:
    """``mean(-logsigmoid(r_chosen - r_rejected - margin))``.

    Bradley & Terry 1952; used for RLHF reward models by Ouyang et al. 2022. The optional
    ``margin`` (Touvron et al. 2023, Llama 2, eq. 2) demands a larger reward gap for pairs that
    annotators rated as clearly different.

    Args: ``r_chosen``, ``r_rejected``: ``(batch,)``; ``margin``: ``(batch,)``, scalar or None.
    """
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def reward_centering_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, coef: float) -> torch.Tensor:
    """``coef * mean((r_chosen + r_rejected)^2)``: pulls rewards towards zero mean.

    Eisenstein et al. 2023, "Helping or Herding? Reward Model Ensembles Mitigate but do not
    Eliminate Reward Hacking": the BT loss only sees differences, so the offset is free; pinning
    it makes scores of separately trained models (and of PPO batches) comparable.

    Args: ``r_chosen``, ``r_rejected``: ``(batch,)``.
    """
    return coef * ((r_chosen + r_rejected) ** 2).mean()


def pairwise_wins(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Per pair: 1 where chosen scores higher, 0.5 on a tie (a coin flip), 0 otherwise."""
    diff = (r_chosen - r_rejected).float()
    return (diff > 0).float() + 0.5 * (diff == 0).float()


@torch.no_grad()
def preference_metrics(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    """``accuracy`` (ties count as half right, as a coin flip would) and ``mean_margin``.

    Args: ``r_chosen``, ``r_rejected``: ``(batch,)``.
    """
    return {"accuracy": pairwise_wins(r_chosen, r_rejected).mean(),
            "mean_margin": (r_chosen - r_rejected).float().mean()}


@torch.no_grad()
def calibration_error(r_chosen: torch.Tensor, r_rejected: torch.Tensor, n_bins: int = 10) -> torch.Tensor:
    """Expected calibration error of the Bradley-Terry preference probabilities.

    Guo et al. 2017, "On Calibration of Modern Neural Networks" (ECE), applied to pairs.
    For a pair the model predicts ``p = sigmoid(r_chosen - r_rejected)`` that the chosen response
    wins, and the observed outcome is 1 (it did). Every pair is folded onto the model's
    *predicted* winner: confidence ``c = max(p, 1 - p)`` in [0.5, 1] and correctness 1 if
    ``p > 0.5``, 0 if ``p < 0.5``, 0.5 if ``p == 0.5`` (no prediction). Confidences are put in
    ``n_bins`` equal-width bins over [0.5, 1] and

        ECE = sum_b (n_b / N) * |mean correctness_b - mean confidence_b|

    so 0 means "of the pairs the model is 70% sure about, it is right 70% of the time", and an
    overconfident model (c near 1, accuracy near 0.5) approaches 0.5.

    Args: ``r_chosen``, ``r_rejected``: ``(batch,)``. Returns a 0-dim fp32 tensor.
    """
    p = torch.sigmoid((r_chosen - r_rejected).float())
    conf = torch.maximum(p, 1.0 - p)
    correct = (p > 0.5).float() + 0.5 * (p == 0.5).float()
    bins = ((conf - 0.5) / 0.5 * n_bins).long().clamp(0, n_bins - 1)
    counts = torch.bincount(bins, minlength=n_bins).float()
    conf_sum = torch.zeros(n_bins, device=conf.device).index_add_(0, bins, conf)
    correct_sum = torch.zeros(n_bins, device=conf.device).index_add_(0, bins, correct)
    # |sum correct - sum conf| / N per bin equals (n_b / N) * |mean correct - mean conf|.
    return (correct_sum - conf_sum).abs().sum() / counts.sum().clamp_min(1)


# ----------------------------------------------------------------------------- DPO family

DPOLoss = Callable[[torch.Tensor, float, float], torch.Tensor]
DPO_LOSSES: Registry[DPOLoss] = Registry("DPO loss type")
register_dpo_loss = DPO_LOSSES.register


def get_dpo_loss(name: str) -> DPOLoss:
    """Per-pair loss ``fn(h (batch,), beta, label_smoothing) -> (batch,)`` registered as ``name``."""
    return DPO_LOSSES.get(name)


def _no_smoothing(name: str, label_smoothing: float) -> None:
    if label_smoothing != 0.0:
        raise ValueError(f"label_smoothing is only used by loss_type='cdpo', got {label_smoothing} with {name!r}")


@register_dpo_loss("sigmoid")
def dpo_sigmoid(h: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """``-logsigmoid(beta * h)``. Rafailov et al. 2023, "Direct Preference Optimization", eq. 7.

    ``h``: ``(batch,)`` log-ratio difference (see ``dpo_loss``).
    """
    _no_smoothing("sigmoid", label_smoothing)
    return -F.logsigmoid(beta * h)


@register_dpo_loss("ipo")
def dpo_ipo(h: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """``(h - 1 / (2 beta))^2``. Azar et al. 2023, "A General Theoretical Paradigm to Understand
    Learning from Human Preferences", eq. 17: regresses the gap to a finite target instead of
    pushing it to infinity. ``h``: ``(batch,)``; the caller passes *length-averaged* log-probs.
    """
    _no_smoothing("ipo", label_smoothing)
    return (h - 1.0 / (2.0 * beta)) ** 2


@register_dpo_loss("cdpo")
def dpo_cdpo(h: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """``-(1 - eps) logsigmoid(beta h) - eps logsigmoid(-beta h)``, ``eps = label_smoothing``.

    Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences & relationship to
    IPO"): assumes each label is flipped with probability eps. ``h``: ``(batch,)``.
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"cdpo label_smoothing must be in [0, 0.5), got {label_smoothing}")
    eps = label_smoothing
    return -(1.0 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO-family loss on sequence log-probs.

    ``h = (pi_c - ref_c) - (pi_r - ref_r)`` is the difference of the policy/reference log-ratios
    of chosen and rejected; the per-pair loss is ``DPO_LOSSES[loss_type](h, beta, label_smoothing)``
    (``sigmoid``, ``ipo``, ``cdpo``), averaged over the batch. For ``ipo`` pass log-probs averaged
    over response tokens (as Azar et al. and common implementations do); for the others, summed.

    Args: all log-probs ``(batch,)``: summed (or, for IPO, averaged) over response tokens.
    Returns ``(loss, chosen_rewards, rejected_rewards)``: scalar loss and detached ``(batch,)``
    implicit rewards ``beta * (pi - ref)``, whose difference is the implicit reward margin.
    """
    fn = get_dpo_loss(loss_type)
    chosen_logratio = policy_chosen_logps - ref_chosen_logps
    rejected_logratio = policy_rejected_logps - ref_rejected_logps
    losses = fn(chosen_logratio - rejected_logratio, beta, label_smoothing)
    chosen_rewards = (beta * chosen_logratio).detach()
    rejected_rewards = (beta * rejected_logratio).detach()
    return losses.mean(), chosen_rewards, rejected_rewards


@torch.no_grad()
def dpo_metrics(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """What a DPO run is judged by, as batch means of detached ``(batch,)`` inputs.

    ``accuracy``: fraction of pairs whose implicit reward ``beta * (pi - ref)`` is higher for the
    chosen response (ties half, as in ``preference_metrics``); ``margin``: mean reward gap;
    ``reward_chosen`` / ``reward_rejected``; ``logp_chosen`` / ``logp_rejected``: the policy's
    log-probs. Both log-probs falling while the margin grows is DPO's known failure mode
    (likelihood displacement), which the rewards alone do not show.
    """
    stats = preference_metrics(chosen_rewards, rejected_rewards)
    return {
        "accuracy": stats["accuracy"],
        "margin": stats["mean_margin"],
        "reward_chosen": chosen_rewards.float().mean(),
        "reward_rejected": rejected_rewards.float().mean(),
        "logp_chosen": policy_chosen_logps.float().mean(),
        "logp_rejected": policy_rejected_logps.float().mean(),
    }

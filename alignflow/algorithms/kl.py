"""Per-token KL estimators between the policy and the reference, and KL-coefficient controllers.

The estimators take log-probs of the *sampled* tokens under the policy (``logp``) and under the
reference (``ref_logp``); because tokens were sampled from the policy, their mean estimates
KL(policy || reference). Reference: J. Schulman, "Approximating KL Divergence" (2020),
http://joschu.net/blog/kl-approx.html.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from alignflow.algorithms.registry import Registry

KLEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

KL_ESTIMATORS: Registry[KLEstimator] = Registry("KL estimator")
register_kl_estimator = KL_ESTIMATORS.register

# exp() of a log-ratio above ~88 overflows fp32; a token 20 nats less likely under one model than
# the other is already an extreme outlier, so clamping there changes nothing in practice.
_MAX_LOG_RATIO = 20.0


def get_kl_estimator(name: str) -> KLEstimator:
    """The estimator registered as ``name`` (``KeyError`` listing valid names otherwise)."""
    return KL_ESTIMATORS.get(name)


@register_kl_estimator("k1")
def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``logp - ref_logp``: unbiased, high variance, can be negative per token.

    Args: ``logp``, ``ref_logp``: ``(batch, response_len)``. Returns ``(batch, response_len)``.
    """
    return logp - ref_logp


@register_kl_estimator("k2")
def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``0.5 * (logp - ref_logp)^2``: biased but low variance and >= 0; its gradient is that of KL.

    Args: ``logp``, ``ref_logp``: ``(batch, response_len)``. Returns ``(batch, response_len)``.
    """
    d = logp - ref_logp
    return 0.5 * d * d


@register_kl_estimator("k3")
def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``exp(r) - r - 1`` with ``r = ref_logp - logp``: unbiased, low variance and always >= 0.

    ``E[exp(r)] = 1`` under the policy, so adding ``exp(r) - 1`` (a zero-mean control variate) to
    k1 keeps it unbiased; convexity of exp makes every term non-negative.

    Args: ``logp``, ``ref_logp``: ``(batch, response_len)``. Returns ``(batch, response_len)``.
    """
    r = (ref_logp - logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return torch.exp(r) - r - 1.0


@register_kl_estimator("abs")
def kl_abs(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``|logp - ref_logp|``: a non-negative penalty (not an unbiased KL estimate).

    Args: ``logp``, ``ref_logp``: ``(batch, response_len)``. Returns ``(batch, response_len)``.
    """
    return (logp - ref_logp).abs()


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate by estimator name; shapes ``(batch, response_len)`` in and out."""
    return get_kl_estimator(estimator)(logp, ref_logp)


# ----------------------------------------------------------------------------- controllers

KL_CONTROLLERS: Registry[type] = Registry("KL controller")


class FixedKLController:
    """A constant KL coefficient (``update`` does nothing)."""

    def __init__(self, coef: float) -> None:
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        """No-op; returns the (unchanged) coefficient."""
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"type": "fixed", "value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Adaptive KL coefficient steering the measured KL towards ``target``.

    Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", section 2.2:
    ``e = clip(KL / target - 1, -0.2, 0.2)``; ``beta <- beta * (1 + e * n_steps / horizon)``.
    The clip keeps one noisy KL measurement from moving the coefficient by more than 20% per
    ``horizon`` steps.
    """

    def __init__(self, init_coef: float, target: float, horizon: int) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be > 0, got {target=} {horizon=}")
        self.value = float(init_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move the coefficient after ``n_steps`` samples at measured ``current_kl``; returns it."""
        proportional_error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"type": "adaptive", "value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Only the coefficient is state; target and horizon come from the (possibly edited) config.
        self.value = float(state["value"])


KL_CONTROLLERS.register("fixed")(FixedKLController)
KL_CONTROLLERS.register("adaptive")(AdaptiveKLController)


def build_kl_controller(kind: str, **kwargs: Any) -> FixedKLController | AdaptiveKLController:
    """Construct a controller by name: ``fixed`` (coef) or ``adaptive`` (init_coef, target, horizon)."""
    return KL_CONTROLLERS.get(kind)(**kwargs)

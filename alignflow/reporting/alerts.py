"""Training-health alerts for RL runs: checked on every step's metrics, printed and logged.

Four failure signatures, each cheap to detect and expensive to miss:

* ``non_finite``: a NaN or inf in any loss or metric (a diverged update);
* ``kl_high``: KL to the reference above ``max_kl`` (the policy is escaping the KL leash,
  typically reward hacking);
* ``entropy_collapse``: mean token entropy below ``min_entropy`` (the policy became
  near-deterministic and stops exploring);
* ``reward_collapse``: reward std at or below ``reward_std_eps`` for ``reward_collapse_steps``
  consecutive steps (every response scores the same: no learning signal is left).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from alignflow.config.rl import AlertConfig

# Metrics that are NaN by definition in a healthy run (explained variance of constant returns).
NAN_OK = ("critic/explained_variance",)


@dataclass(frozen=True)
class Alert:
    step: int
    kind: str  # non_finite | kl_high | entropy_collapse | reward_collapse
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AlertMonitor:
    """``check(step, metrics)`` -> the alerts this step raises (empty when healthy)."""

    def __init__(self, cfg: AlertConfig, *, kl_key: str = "kl/ref", entropy_key: str = "policy/entropy",
                 reward_std_key: str = "reward/raw_std") -> None:
        self.cfg = cfg
        self.kl_key, self.entropy_key, self.reward_std_key = kl_key, entropy_key, reward_std_key
        self.flat_reward_steps = 0  # consecutive steps with a collapsed reward std

    def check(self, step: int, metrics: dict[str, Any]) -> list[Alert]:
        if not self.cfg.enabled:
            return []
        alerts = []
        bad = [k for k, v in metrics.items() if _is_number(v) and not math.isfinite(v) and k not in NAN_OK]
        if bad:
            alerts.append(Alert(step, "non_finite", f"non-finite values in {', '.join(sorted(bad))}"))
        kl = metrics.get(self.kl_key)
        if _finite(kl) and kl > self.cfg.max_kl:
            alerts.append(Alert(step, "kl_high", f"KL to the reference {kl:.3g} > alerts.max_kl={self.cfg.max_kl:g}"))
        entropy = metrics.get(self.entropy_key)
        if _finite(entropy) and entropy < self.cfg.min_entropy:
            alerts.append(Alert(step, "entropy_collapse",
                                f"entropy {entropy:.3g} < alerts.min_entropy={self.cfg.min_entropy:g}"))
        std = metrics.get(self.reward_std_key)
        if _finite(std):
            self.flat_reward_steps = self.flat_reward_steps + 1 if std <= self.cfg.reward_std_eps else 0
            if self.flat_reward_steps >= self.cfg.reward_collapse_steps:
                alerts.append(Alert(step, "reward_collapse",
                                    f"reward std {std:.3g} <= {self.cfg.reward_std_eps:g} for "
                                    f"{self.flat_reward_steps} consecutive steps"))
        return alerts

    def state_dict(self) -> dict[str, Any]:
        return {"flat_reward_steps": self.flat_reward_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.flat_reward_steps = int(state.get("flat_reward_steps", 0))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)

"""The pure tensor math of alignment: tensors in, tensors out; no models, no I/O.

Algorithms are chosen by name through registries (``get_advantage_estimator("grpo")``,
``get_policy_loss("ppo_clip")``, ``get_kl_estimator("k3")``, ``get_dpo_loss("ipo")``,
``aggregate_loss(..., mode="token-mean")``); adding one is a single decorated function.
"""

from alignflow.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    discounted_returns,
    gae_advantages,
    get_advantage_estimator,
    grpo_advantages,
    register_advantage_estimator,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    rloo_advantages,
)
from alignflow.algorithms.importance import truncated_is_weights
from alignflow.algorithms.kl import (
    KL_CONTROLLERS,
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    build_kl_controller,
    get_kl_estimator,
    kl_estimate,
    register_kl_estimator,
)
from alignflow.algorithms.logprobs import entropy_from_logits, logprobs_from_logits
from alignflow.algorithms.masking import masked_count, masked_mean, masked_sum, masked_var, masked_whiten
from alignflow.algorithms.policy_loss import (
    LOSS_AGGREGATIONS,
    POLICY_LOSSES,
    aggregate_loss,
    get_policy_loss,
    ppo_clip_loss,
    register_loss_aggregation,
    register_policy_loss,
)
from alignflow.algorithms.preference import (
    DPO_LOSSES,
    bradley_terry_loss,
    calibration_error,
    dpo_loss,
    dpo_metrics,
    get_dpo_loss,
    preference_metrics,
    register_dpo_loss,
    reward_centering_loss,
)
from alignflow.algorithms.registry import Registry
from alignflow.algorithms.rewards import (
    apply_missing_eos_penalty,
    kl_penalized_token_rewards,
    score_token_rewards,
    whiten_rewards,
)
from alignflow.algorithms.sequences import first_true, last_token_index, truncate_after_eos
from alignflow.algorithms.sft_loss import IGNORE_INDEX, masked_token_nll
from alignflow.algorithms.value_loss import clipped_value_loss, explained_variance

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "DPO_LOSSES",
    "IGNORE_INDEX",
    "KL_CONTROLLERS",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "POLICY_LOSSES",
    "AdaptiveKLController",
    "FixedKLController",
    "Registry",
    "aggregate_loss",
    "apply_missing_eos_penalty",
    "bradley_terry_loss",
    "build_kl_controller",
    "calibration_error",
    "clipped_value_loss",
    "discounted_returns",
    "dpo_loss",
    "dpo_metrics",
    "entropy_from_logits",
    "explained_variance",
    "first_true",
    "gae_advantages",
    "get_advantage_estimator",
    "get_dpo_loss",
    "get_kl_estimator",
    "get_policy_loss",
    "grpo_advantages",
    "kl_estimate",
    "kl_penalized_token_rewards",
    "score_token_rewards",
    "last_token_index",
    "logprobs_from_logits",
    "masked_count",
    "masked_mean",
    "masked_sum",
    "masked_token_nll",
    "masked_var",
    "masked_whiten",
    "ppo_clip_loss",
    "preference_metrics",
    "register_advantage_estimator",
    "register_dpo_loss",
    "register_kl_estimator",
    "register_loss_aggregation",
    "register_policy_loss",
    "reinforce_pp_advantages",
    "reinforce_pp_baseline_advantages",
    "reward_centering_loss",
    "rloo_advantages",
    "truncate_after_eos",
    "truncated_is_weights",
    "whiten_rewards",
]

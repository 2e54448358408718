"""The RL job config: PPO, GRPO, RLOO or REINFORCE++ by `algorithm.adv_estimator`.

Defaults follow Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO" (the TL;DR
recipe): temperature 0.7, KL penalty 0.05 in the reward, missing-EOS penalty -1, GAE gamma 1 /
lambda 0.95, whitened advantages, clipped policy and value losses, 4 PPO epochs, Adam eps 1e-5,
linear LR decay. Every field is documented where it is declared so that a YAML file reads like a
form; ``validate()`` checks what the types cannot (batch sizes that must divide, registry names).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Literal

from alignflow.algorithms import (
    ADVANTAGE_ESTIMATORS,
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    POLICY_LOSSES,
    get_advantage_estimator,
)
from alignflow.config.distributed import DistributedConfig
from alignflow.config.loader import ConfigError
from alignflow.config.rewards import RewardSpec, legacy_reward_specs, validate_reward_specs
from alignflow.config.schema import (
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    OPTIONAL_COUNT,
    POSITIVE,
    ModelConfig,
    Range,
    TrainConfig,
    check_ranges,
)


def _required_kwarg(estimator: str, name: str) -> bool:
    parameter = inspect.signature(get_advantage_estimator(estimator)).parameters.get(name)
    return parameter is not None and parameter.default is inspect.Parameter.empty


def estimator_needs_critic(estimator: str) -> bool:
    """True when the estimator declares ``values`` without a default (GAE): a critic is built.

    Read from the registered function's signature, so a new estimator needs no edit here.
    """
    return _required_kwarg(estimator, "values")


def estimator_needs_groups(estimator: str) -> bool:
    """True when the estimator declares ``group_ids`` without a default (GRPO, RLOO, ...)."""
    return _required_kwarg(estimator, "group_ids")


@dataclass
class PromptDataConfig:
    train: str = ""  # prompts: file, folder or hub name read with `read_prompts` (HH dialogues work too)
    validation: str | None = None  # held-out prompts; when empty `val_fraction` of `train` is held out by seed
    val_fraction: float = 0.05
    split_seed: int = 0  # fixes the held-out prompts on their own (see DataConfig.split_seed)
    split_by: Literal["row", "prompt"] = "row"  # prompt: see DataConfig.split_by
    max_samples: int | None = None  # read at most this many good rows from `train`
    max_prompt_length: int = 256  # tokens; longer prompts are cut from the left (oldest turns first)
    strict: bool = False  # fail on the first malformed row instead of reporting and skipping it


@dataclass
class RolloutConfig:
    """Sampling settings (the fields of `alignflow.rollout.SamplingParams`)."""

    max_new_tokens: int = 64  # generate at most this many tokens, then cut after the first EOS
    temperature: float = 0.7  # also divides the logits when log-probs are recomputed
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    repetition_penalty: float = 1.0
    n: int = 1  # samples per prompt (>= 2 for group estimators: grpo, rloo, reinforce_pp_baseline)
    stop_strings: list[str] = field(default_factory=list)
    eval_greedy: bool = True  # held-out evaluation decodes greedily (else samples like training)
    # Which weights the rollout engine samples from. shared: the actor's own module (no copy; one
    # unsharded rank only). bf16 / fp32: a copy of the actor's weights, synced after every update
    # (about 0.1 s for 135M params); bf16 decodes ~1.4x faster on CPU than bf16 autocast over fp32
    # weights, which re-casts every weight at every token. auto: bf16 when model.dtype is bf16,
    # else shared on one rank and fp32 on several (a sharded actor cannot decode token by token).
    # int8: a bf16 copy whose block linear layers hold int8 weights with per-channel scales (the LM
    # head stays bf16), re-quantised from the actor's weights after every update (alignflow.rollout.
    # int8; engine hf, a CPU with native bf16, no LoRA). It was faster than a plain bf16 copy only when
    # a decode step has few rows (bench/int8_decode.py, SmolLM2-135M on one shared core: 8 rows x 64
    # tokens 3.6 s against 8.9 s; 64 rows x 24 tokens 15.8 s against 8.9 s), and no faster than the
    # packed bf16 copy (alignflow.rollout.linears; 2 cores, 8 rows x 64 tokens: 2.83 s both, plain bf16
    # 3.15 s). Its sampler drifts from the actor more than bf16's (|log-prob gap| 0.05-0.07 against
    # 0.03), hence is_cap.
    weights: Literal["auto", "shared", "bf16", "fp32", "int8"] = "auto"
    # hf: alignflow's own decoding loop over a transformers model (CPU or GPU). vllm: vLLM on a CUDA
    # GPU (`pip install 'alignflow[vllm]'`), colocated with the actor and asleep while it trains; its
    # copy of the weights is in the dtype `weights` names (auto: model.dtype) and synced every step.
    engine: Literal["hf", "vllm"] = "hf"
    # Truncated importance sampling: each response token's policy-gradient loss is weighted by
    # min(pi_actor / pi_rollout, is_cap), correcting for the rollout copy sampling from slightly
    # different weights (algorithms.importance). null: 2.0 with weights int8, off otherwise (a bf16
    # or fp32 copy stays as close to the actor as the actor's own bf16 passes, so their runs are
    # unchanged); 0: off; else a cap >= 1.
    is_cap: float | None = None


def resolve_rollout_weights(weights: str, model_dtype: str, world_size: int = 1) -> str:
    """``rollout.weights`` without ``auto`` (see :class:`RolloutConfig`)."""
    if weights == "auto":
        return "bf16" if model_dtype == "bf16" else ("shared" if world_size == 1 else "fp32")
    return weights


DEFAULT_INT8_IS_CAP = 2.0  # verl's TIS default; SmolLM2-135M: 0.07-0.2% of int8 tokens exceed it (bench/int8_decode)


def resolve_is_cap(is_cap: float | None, rollout_weights: str) -> float | None:
    """``rollout.is_cap`` as applied: a cap >= 1, or None for no correction (see :class:`RolloutConfig`)."""
    if is_cap is None:
        return DEFAULT_INT8_IS_CAP if rollout_weights == "int8" else None
    return float(is_cap) if is_cap else None


@dataclass
class AlgorithmConfig:
    adv_estimator: str = "gae"  # any name in ADVANTAGE_ESTIMATORS; a critic is built only when it needs values
    estimator_options: dict = field(default_factory=dict)  # extra keyword options, e.g. {norm_by_std: false}
    policy_loss: str = "ppo_clip"  # any name in POLICY_LOSSES
    gamma: float = 1.0  # GAE discount
    lam: float = 0.95  # GAE lambda
    kl_coef: float = 0.05  # beta: initial / fixed KL coefficient
    kl_estimator: str = "k1"  # k1 | k2 | k3 | abs (per-token estimate used in the reward or the loss)
    kl_controller: Literal["fixed", "adaptive"] = "fixed"
    target_kl: float = 6.0  # adaptive controller: target KL per sequence (nats)
    horizon: int = 10000  # adaptive controller: samples over which the coefficient may move 20%
    kl_in_reward: bool = True  # per-token -beta*KL inside the reward; false: KL as a loss term instead
    kl_loss_coef: float = 0.0  # weight of the KL loss term when kl_in_reward is false (GRPO style)
    whiten_advantages: bool = True  # masked whitening over the batch (GAE)
    whiten_rewards: bool = False  # scale token rewards to unit variance (keeps their mean)
    missing_eos_penalty: float | None = -1.0  # score given to responses without EOS; null = off
    clip_low: float = 0.2  # PPO ratio clip: 1 - clip_low ...
    clip_high: float | None = None  # ... 1 + clip_high (null = clip_low; larger = DAPO clip-higher)
    dual_clip: float | None = None  # c > 1 bounds the loss on negative advantages; null = off
    vf_clip: float | None = 0.2  # value clipping around the rollout-time values; null = plain MSE
    vf_coef: float = 0.1  # scales the critic loss (the critic has its own optimizer)
    entropy_coef: float = 0.0  # entropy bonus: loss -= entropy_coef * entropy
    loss_agg_mode: str = "token-mean"  # any name in LOSS_AGGREGATIONS
    # The critic's body and head: "reward_model" = the reward-model folder (a decoder sharing the
    # policy's tokenizer), "policy" = the policy's body with a fresh scalar head, "auto" = the reward
    # model when it is such a decoder, else the policy (the choice is printed).
    critic_init: Literal["auto", "reward_model", "policy"] = "auto"


@dataclass
class RLTrainConfig:
    steps: int = 100  # PPO iterations (generate -> score -> ... -> update)
    prompts_per_step: int = 16  # prompts per rollout batch; rows = prompts_per_step x rollout.n
    ppo_epochs: int = 4  # passes over each rollout batch, in freshly shuffled mini-batches
    mini_batch_size: int = 8  # rows per optimizer step
    micro_batch_size: int = 4  # rows per forward/backward (gradient accumulation inside a mini-batch)
    actor_lr: float = 3e-6
    critic_lr: float = 3e-6
    # A critic started from the policy has a fresh value head: at the body's LR it stays far from the
    # returns for many steps (explained variance well below 0) and its advantages are mostly noise.
    critic_head_lr: float | None = None  # the value head's LR; null = critic_lr
    critic_warmup: int = 0  # the first N steps update only the critic, so the actor starts with a fitted baseline
    adam_eps: float = 1e-5  # Huang et al.: PyTorch's 1e-8 gives too aggressive early updates
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: Literal["linear", "constant", "cosine"] = "linear"
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 0  # steps; 0 = only at the end
    eval_every: int = 0  # steps; 0 = only at step 0 and at the end
    eval_prompts: int = 64  # held-out prompts scored at each evaluation (0 = no evaluation)
    log_every: int = 1  # console line every this many steps (files get every step)
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    max_skipped_updates: int = 5  # stop after this many steps in a row whose updates were all non-finite
    # torch.compile the actor's and critic's transformer blocks (as train.compile in SFT): faster
    # log-prob passes and updates after a first step that compiles. Rollouts keep their own copy.
    compile: bool = False
    # The log-prob, value and update passes compute each prompt once for all its samples in a
    # forward (a group's n responses after one prompt, under a block mask: models.shared_prefix).
    # null (auto): wherever the model can (a causal decoder with sdpa or eager attention that passes
    # the check at start; not with train.compile, whose blocks are not yet checked with the 4D
    # mask); true: required (an error names this setting where the model cannot); false: off.
    # The bench's GRPO case (2 prompts x 4 samples): log-prob pass and actor update 10-25% faster.
    share_prompt: bool | None = None

    @property
    def share_prompt_request(self) -> bool | None:
        """``share_prompt`` for ``models.shared_prefix.use_shared_prefix``: auto is off under ``compile``."""
        return False if self.share_prompt is None and self.compile else self.share_prompt

    def optim_config(self, lr: float) -> TrainConfig:
        """The shared optimizer/schedule settings, for `build_optimizer` / `build_scheduler`."""
        return TrainConfig(lr=lr, adam_eps=self.adam_eps, adam_betas=tuple(self.adam_betas),
                           weight_decay=self.weight_decay, scheduler=self.schedule, warmup_ratio=self.warmup_ratio,
                           max_grad_norm=self.max_grad_norm, seed=self.seed)


@dataclass
class AlertConfig:
    enabled: bool = True
    stop_on_alert: bool = False  # save a checkpoint and stop at the first alert
    max_kl: float = 20.0  # KL to the reference per sequence (nats) above which to alert
    min_entropy: float = 0.05  # mean token entropy (nats) below which the policy has collapsed
    reward_std_eps: float = 1e-6  # reward std at or below this counts as collapsed ...
    reward_collapse_steps: int = 3  # ... for this many consecutive steps


@dataclass
class RLConfig:
    output_dir: str = "runs/ppo"
    model: ModelConfig = field(default_factory=ModelConfig)  # the policy (start from an SFT folder)
    reward_model: str = ""  # a folder written by `alignflow rm train` (its model/ or best/)
    reward_function: str = ""  # or a Python reward "package.module:function" (see alignflow.rewards)
    rewards: list[RewardSpec] = field(default_factory=list)  # or a weighted sum of terms (config/rewards.py)
    data: PromptDataConfig = field(default_factory=PromptDataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    train: RLTrainConfig = field(default_factory=RLTrainConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    resume: bool = True  # continue from the newest checkpoint in output_dir when there is one
    force_resume: bool = False  # resume even when settings that shape the run changed (see resume_check)

    @property
    def rows_per_step(self) -> int:
        return self.train.prompts_per_step * self.rollout.n

    @property
    def reward_specs(self) -> list[RewardSpec]:
        """The job's reward as a list of terms, whichever of the three keys set it."""
        return self.rewards or legacy_reward_specs(self.reward_model, self.reward_function)

    @property
    def rollout_weights(self) -> str:
        return resolve_rollout_weights(self.rollout.weights, self.model.dtype, self.distributed.world_size)

    @property
    def is_cap(self) -> float | None:
        """The truncated importance-sampling cap in force, or None (``rollout.is_cap`` resolved)."""
        return resolve_is_cap(self.rollout.is_cap, self.rollout_weights)

    @property
    def needs_critic(self) -> bool:
        return estimator_needs_critic(self.algorithm.adv_estimator)

    def validate(self) -> None:
        self.model.validate()
        self.distributed.validate()
        if not self.data.train:
            raise ConfigError("data.train must name a prompt dataset (file, folder or hub name)")
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.data.val_fraction}")
        if sum(map(bool, (self.reward_model, self.reward_function, self.rewards))) != 1:
            raise ConfigError("set exactly one of reward_model (a reward-model folder), reward_function "
                              "(package.module:function) and rewards (a list of weighted terms)")
        validate_reward_specs(self.rewards)
        self._validate_names()
        self._validate_batches()
        algo, rollout = self.algorithm, self.rollout
        if estimator_needs_groups(algo.adv_estimator) and rollout.n < 2:
            raise ConfigError(f"algorithm.adv_estimator={algo.adv_estimator!r} compares samples of the same "
                              f"prompt: rollout.n must be >= 2, got {rollout.n}")
        if algo.critic_init == "reward_model" and self.needs_critic and not self.reward_model:
            raise ConfigError("algorithm.critic_init=reward_model needs reward_model (a reward-model folder); "
                              "use algorithm.critic_init=policy with a reward_function")
        if algo.kl_loss_coef < 0:
            raise ConfigError(f"algorithm.kl_loss_coef must be >= 0, got {algo.kl_loss_coef}")
        if algo.kl_controller == "adaptive" and (algo.target_kl <= 0 or algo.horizon <= 0):
            raise ConfigError("algorithm.target_kl and algorithm.horizon must be > 0 for the adaptive controller")
        if rollout.max_new_tokens < 1:
            raise ConfigError(f"rollout.max_new_tokens must be >= 1, got {rollout.max_new_tokens}")
        if not rollout.temperature > 0:
            raise ConfigError(f"rollout.temperature must be > 0, got {rollout.temperature}")
        if rollout.is_cap is not None and rollout.is_cap != 0 and not rollout.is_cap >= 1:
            raise ConfigError(f"rollout.is_cap must be >= 1 (a truncation of the importance ratio), 0 (off) or "
                              f"null (2.0 with rollout.weights=int8, else off), got {rollout.is_cap}")
        for key in ("actor_lr", "critic_lr", "critic_head_lr"):
            if getattr(self.train, key) is not None and getattr(self.train, key) <= 0:
                raise ConfigError(f"train.{key} must be positive, got {getattr(self.train, key)}")
        for key in ("steps", "ppo_epochs"):
            if getattr(self.train, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self.train, key)}")
        if self.train.critic_warmup and not self.needs_critic:
            raise ConfigError(f"train.critic_warmup={self.train.critic_warmup} needs a critic, but "
                              f"algorithm.adv_estimator={algo.adv_estimator!r} uses none")
        if not 0 <= self.train.critic_warmup < self.train.steps:
            raise ConfigError(f"train.critic_warmup must be in [0, train.steps), got {self.train.critic_warmup}")
        if self.train.compile and self.rollout_weights == "shared":
            raise ConfigError("train.compile needs a rollout copy of the weights (rollout.weights: bf16, or auto "
                              "with model.dtype: bf16): the engine's growing KV cache would recompile shared blocks")
        if self.train.compile and self.model.lora.enabled:
            raise ConfigError("train.compile does not support model.lora: the reference switches the adapters "
                              "of the same blocks off and on, which recompiles them at every switch")
        if self.rollout_weights == "int8" and self.model.lora.enabled:
            raise ConfigError("rollout.weights=int8 does not support model.lora yet (the adapters' layers would be "
                              "quantised apart from their base); use rollout.weights=bf16")
        self._validate_distributed()
        self._validate_rollout_engine()
        if self.train.eval_prompts < 0:
            raise ConfigError(f"train.eval_prompts must be >= 0, got {self.train.eval_prompts}")
        check_ranges("train", self.train, {
            "log_every": AT_LEAST_ONE, "save_every": NON_NEGATIVE, "eval_every": NON_NEGATIVE, "adam_eps": POSITIVE,
            "adam_betas": FRACTION, "weight_decay": NON_NEGATIVE, "warmup_ratio": FRACTION, "max_grad_norm": POSITIVE,
            "threads": OPTIONAL_COUNT, "max_skipped_updates": AT_LEAST_ONE})
        check_ranges("data", self.data, {"max_samples": OPTIONAL_COUNT, "max_prompt_length": AT_LEAST_ONE})
        check_ranges("rollout", self.rollout, {"top_k": NON_NEGATIVE, "repetition_penalty": POSITIVE,
                                               "top_p": Range(0, 1, low_open=True, high_open=False)})
        unit_interval = Range(0, 1, high_open=False)
        check_ranges("algorithm", self.algorithm, {
            "gamma": unit_interval, "lam": unit_interval, "kl_coef": NON_NEGATIVE, "clip_low": POSITIVE,
            "vf_coef": NON_NEGATIVE})

    def _validate_distributed(self) -> None:
        world = self.distributed.world_size
        if world == 1:
            return
        if self.rows_per_step % world or self.train.mini_batch_size % world:
            raise ConfigError(f"distributed.world_size={world} must divide train.mini_batch_size "
                              f"({self.train.mini_batch_size}) and the rows of a step ({self.rows_per_step}): "
                              "every rank trains an equal part of each mini-batch")
        if self.rollout.weights == "shared":
            raise ConfigError("rollout.weights=shared needs one rank: a sharded actor cannot sample token by token; "
                              "use rollout.weights=auto, fp32 or bf16")
        if self.model.lora.enabled:
            raise ConfigError("model.lora with distributed.world_size > 1 is not supported yet; "
                              "train LoRA on one rank or fully fine-tune on several")
        if self.train.compile:
            raise ConfigError("train.compile with distributed.world_size > 1 is not supported yet")

    def _validate_rollout_engine(self) -> None:
        if self.rollout.engine == "hf":
            return
        if self.rollout.weights in ("shared", "int8"):
            raise ConfigError(f"rollout.engine=vllm keeps its own copy of the weights: use rollout.weights=auto, "
                              f"bf16 or fp32, not {self.rollout.weights} (int8 is a copy for rollout.engine=hf)")
        if self.model.lora.enabled:
            raise ConfigError("rollout.engine=vllm does not support model.lora yet (the adapters would have to be "
                              "merged at every sync); use rollout.engine=hf")
        if self.distributed.backend == "local":  # the workers run here: this process must be able to run vLLM
            from alignflow.rollout.vllm import vllm_unavailable_reason

            if reason := vllm_unavailable_reason():
                raise ConfigError(reason)

    def _validate_names(self) -> None:
        algo = self.algorithm
        for key, registry in (("adv_estimator", ADVANTAGE_ESTIMATORS), ("policy_loss", POLICY_LOSSES),
                              ("kl_estimator", KL_ESTIMATORS), ("loss_agg_mode", LOSS_AGGREGATIONS)):
            if getattr(algo, key) not in registry:
                raise ConfigError(f"algorithm.{key}={getattr(algo, key)!r} is unknown; "
                                  f"valid names: {', '.join(registry.names())}")

    def _validate_batches(self) -> None:
        t = self.train
        if t.prompts_per_step < 1 or t.mini_batch_size < 1 or t.micro_batch_size < 1 or self.rollout.n < 1:
            raise ConfigError("train.prompts_per_step, train.mini_batch_size, train.micro_batch_size and "
                              "rollout.n must all be >= 1")
        if self.rows_per_step % t.mini_batch_size:
            raise ConfigError(
                f"train.mini_batch_size ({t.mini_batch_size}) must divide train.prompts_per_step x rollout.n "
                f"({t.prompts_per_step} x {self.rollout.n} = {self.rows_per_step})")
        if t.mini_batch_size % t.micro_batch_size:
            raise ConfigError(f"train.micro_batch_size ({t.micro_batch_size}) must divide "
                              f"train.mini_batch_size ({t.mini_batch_size})")

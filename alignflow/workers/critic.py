"""The critic: a transformer body plus a scalar head giving a value for every response token.

The critic is a Hugging Face sequence-classification model (``score`` head, one output) whose head
is applied at every position instead of only the last one. Two starts (``algorithm.critic_init``):

* ``reward_model``: the reward-model folder itself (Huang et al. 2024, detail 17). Its head at
  position ``t`` is exactly the reward model's score of the text ending at ``t``, so the initial
  values are already informed; the reward model's centring offset is added like the scorer does.
  This needs a decoder that reads the policy's tokens (same tokenizer); a bidirectional encoder
  (MiniLM, BERT) would let each position see the future.
* ``policy``: the policy's body with a fresh scalar head set to zero, so every value starts at 0:
  the mean of a centred reward model's scores. A random head (std 1/sqrt(d+1)) on SmolLM2 gave
  values far off the returns (explained variance about -17) that took many steps to unlearn.

The value at response index ``t`` is ``V(prompt + response[:t])``, read at the hidden state that
predicts token ``t`` (the same positions as the log-probs).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignflow.algorithms import clipped_value_loss, masked_mean
from alignflow.batch import Batch
from alignflow.config.rl import AlgorithmConfig, RLTrainConfig
from alignflow.config.schema import ModelConfig
from alignflow.models import is_causal_decoder, load_reward_model, load_tokenizer, value_head
from alignflow.models.reward_io import OFFSET_KEY
from alignflow.runtime import autocast
from alignflow.runtime.optim import build_optimizer, build_scheduler
from alignflow.workers.actor import response_hidden
from alignflow.workers.base import (
    add_weighted,
    dispatch,
    load_trainable,
    micro_batch_weights,
    save_trainable,
    step_optimizer,
)


def reward_model_critic_problem(reward_model_dir: str | Path, policy_tokenizer) -> str | None:
    """Why the reward-model folder cannot serve as the critic, or None when it can."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(reward_model_dir)
    if not is_causal_decoder(config):
        return (f"the reward model is a {config.model_type!r} encoder, not a causal decoder "
                "(its positions see the future)")
    if load_tokenizer(str(reward_model_dir)).get_vocab() != policy_tokenizer.get_vocab():
        return "the reward model's tokenizer differs from the policy's, so it cannot read the policy's tokens"
    return None


def resolve_critic_init(choice: str, reward_model_dir: str, policy_tokenizer) -> tuple[str, str]:
    """``(init, reason)`` with init ``reward_model`` or ``policy``; ``auto`` picks the reward model
    when :func:`reward_model_critic_problem` finds none. An explicit ``reward_model`` that cannot
    work is a ``ValueError``."""
    if choice == "policy":
        return "policy", "algorithm.critic_init=policy"
    problem = reward_model_critic_problem(reward_model_dir, policy_tokenizer) if reward_model_dir else "no reward_model"
    if problem is None:
        return "reward_model", f"initialised from the reward model {reward_model_dir}"
    if choice == "reward_model":
        raise ValueError(f"algorithm.critic_init=reward_model: {problem}; use algorithm.critic_init=policy")
    return "policy", f"initialised from the policy ({problem})"


def load_critic_model(init: str, model_cfg: ModelConfig, reward_model_dir: str = "") -> tuple[nn.Module, Any, float]:
    """``(model, tokenizer, offset)``: a one-output sequence-classification model, dropout off."""
    # A reward-model folder brings its trained head; the policy gets a fresh one.
    name = str(reward_model_dir) if init == "reward_model" else model_cfg.name
    model, tokenizer = load_reward_model(replace(model_cfg, name=name))
    if init == "policy":
        with torch.no_grad():
            for param in value_head(model).parameters():
                param.zero_()
    return model, tokenizer, float(getattr(model.config, OFFSET_KEY, 0.0) or 0.0)


def token_values(model, batch: Batch, offset: float = 0.0) -> torch.Tensor:
    """Values ``(B, R)`` fp32 of the states before each response token; 0 on padding."""
    values = value_head(model)(response_hidden(model, batch)).squeeze(-1).float() + offset
    return torch.where(batch["response_mask"].bool(), values, torch.zeros_like(values))


class CriticWorker:
    """``compute_values(batch)`` and the clipped value-loss ``update(batch)``, own optimizer."""

    def __init__(self, model, tokenizer, *, algorithm: AlgorithmConfig, train: RLTrainConfig, total_updates: int,
                 dtype: str = "fp32", offset: float = 0.0) -> None:
        self.model, self.tokenizer, self.algorithm, self.train_cfg = model, tokenizer, algorithm, train
        self.dtype, self.offset = dtype, offset
        optim_cfg = train.optim_config(train.critic_lr)
        self.optimizer = build_optimizer(model, optim_cfg, head=value_head(model), head_lr=train.critic_head_lr)
        self.scheduler = build_scheduler(self.optimizer, optim_cfg, total_updates)

    @dispatch("split")
    @torch.no_grad()
    def compute_values(self, batch: Batch) -> Batch:
        """``values`` ``(B, R)`` at rollout time (the clipping anchor of the value loss)."""
        self.model.eval()
        with autocast(self.dtype):
            return Batch(tensors={"values": token_values(self.model, batch, self.offset)})

    @dispatch("split")
    def update(self, batch: Batch) -> dict[str, float]:
        """Regress values on ``returns`` for ``ppo_epochs`` over shuffled mini-batches (needs ``values``)."""
        cfg = self.train_cfg
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + int(batch.info.get("step", 0)) + 2)
        mini_batches = [m for _ in range(cfg.ppo_epochs) for m in batch.shuffle(generator).split(cfg.mini_batch_size)]
        totals: dict[str, float] = {}
        self.model.train()
        for mini in mini_batches:
            add_weighted(totals, self._optimizer_step(mini), 1.0 / len(mini_batches))
        return {f"critic/{k}": v for k, v in totals.items()}

    def _optimizer_step(self, mini: Batch) -> dict[str, Any]:
        algo = self.algorithm
        micro_batches = mini.split(self.train_cfg.micro_batch_size)
        stats: dict[str, float] = {}
        for micro, weight in zip(micro_batches, micro_batch_weights(micro_batches, algo.loss_agg_mode)):
            with autocast(self.dtype):
                values = token_values(self.model, micro, self.offset)
            mask = micro["response_mask"]
            value_loss, metrics = clipped_value_loss(values, micro["values"], micro["returns"], mask,
                                                     clip_eps=algo.vf_clip, loss_agg_mode=algo.loss_agg_mode)
            (algo.vf_coef * value_loss * weight).backward()
            add_weighted(stats, {"value_loss": value_loss.detach(), "values_mean": masked_mean(values.detach(), mask),
                                 **metrics}, weight)
        stats.update(step_optimizer(self.model, self.optimizer, self.scheduler, self.train_cfg.max_grad_norm))
        return stats

    @dispatch("broadcast")
    def save_checkpoint(self, directory: str, metadata: dict[str, Any]) -> None:
        """``directory/critic/`` (a Hugging Face sequence-classification folder) and ``critic_state.pt``."""
        save_trainable(self.model, self.tokenizer, self.optimizer, self.scheduler, Path(directory) / "critic",
                       Path(directory) / "critic_state.pt", metadata)

    @dispatch("broadcast")
    def load_checkpoint(self, directory: str) -> None:
        load_trainable(self.model, self.optimizer, self.scheduler, Path(directory) / "critic",
                       Path(directory) / "critic_state.pt")

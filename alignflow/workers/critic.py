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
from alignflow.config.rl import RLConfig
from alignflow.config.schema import ModelConfig
from alignflow.models import (
    compile_blocks,
    disable_dropout,
    is_causal_decoder,
    load_reward_model,
    load_tokenizer,
    value_head,
)
from alignflow.models.forward import packs_exactly, token_values
from alignflow.models.reward_io import OFFSET_KEY
from alignflow.models.shared_prefix import use_shared_prefix
from alignflow.runtime import autocast, resolve_device
from alignflow.workers.base import dispatch
from alignflow.workers.engine import TrainingEngine, load_rank_rng, save_rank_rng
from alignflow.workers.policy import optimizer_updates, update_order


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


class CriticWorker:
    """``compute_values(batch)`` and the clipped value-loss ``update(batch)``, own optimizer. Built
    from ``(config, role)``; the model loads in :meth:`init_model`."""

    def __init__(self, config: RLConfig, role: str = "critic") -> None:
        self.cfg, self.role = config, role

    def init_model(self) -> None:
        cfg = self.cfg
        self.device = resolve_device()
        policy_tokenizer = load_tokenizer(cfg.model.name)
        init, reason = resolve_critic_init(cfg.algorithm.critic_init, cfg.reward_model, policy_tokenizer)
        self.init_reason = reason
        model, self.tokenizer, self.offset = load_critic_model(init, cfg.model, cfg.reward_model)
        if cfg.model.disable_dropout:
            disable_dropout(model)
        model.to(self.device)
        packs_exactly(model)  # decided once on the whole model, before it is sharded
        # Each prompt once for all its samples (models.shared_prefix): the critic's own decision.
        self.share = use_shared_prefix(model, f"the critic ({init})", "train.share_prompt",
                                       cfg.train.share_prompt_request)
        if cfg.train.compile:
            compile_blocks(model)
        train = cfg.train
        self.engine = TrainingEngine(model, head="value", optim_cfg=train.optim_config(train.critic_lr),
                                     total_updates=optimizer_updates(cfg), dtype=cfg.model.dtype, device=self.device,
                                     head_lr=train.critic_head_lr, offload=cfg.distributed.offload)

    @dispatch("broadcast")
    def describe(self) -> str:
        """How the critic was initialised (printed by the job)."""
        return self.init_reason

    @dispatch("split")
    @torch.no_grad()
    def compute_values(self, batch: Batch) -> Batch:
        """``values`` ``(B, R)`` at rollout time (the clipping anchor of the value loss)."""
        self.engine.module.eval()
        with autocast(self.cfg.model.dtype, self.device.type):
            values = token_values(self.engine.module, batch.to(self.device), self.offset, share=self.share)
        return Batch(tensors={"values": values.cpu()})

    @dispatch("broadcast")
    def update(self, batch: Batch, *, step: int) -> dict[str, float]:
        """Regress values on ``returns`` for ``ppo_epochs`` over shuffled global mini-batches (every
        rank trains its part of each); needs ``values``."""
        train, algo = self.cfg.train, self.cfg.algorithm
        mini_batches = update_order(batch.to(self.device), train.seed, step, 2, train.ppo_epochs, train.mini_batch_size)

        def loss_fn(micro: Batch) -> tuple[torch.Tensor, dict[str, Any]]:
            with autocast(self.cfg.model.dtype, self.device.type):
                values = token_values(self.engine.module, micro, self.offset, share=self.share)
            mask = micro["response_mask"]
            value_loss, metrics = clipped_value_loss(values, micro["values"], micro["returns"], mask,
                                                     clip_eps=algo.vf_clip, loss_agg_mode=algo.loss_agg_mode)
            return algo.vf_coef * value_loss, {"value_loss": value_loss.detach(),
                                               "values_mean": masked_mean(values.detach(), mask), **metrics}

        self.engine.module.train()
        totals: dict[str, float] = {}
        for mini in mini_batches:
            stats = self.engine.train_mini_batch(mini, micro_batch_size=train.micro_batch_size,
                                                 loss_agg_mode=algo.loss_agg_mode, loss_fn=loss_fn)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value / len(mini_batches)
        return {f"critic/{k}": v for k, v in totals.items()}

    @dispatch("broadcast")
    def save_checkpoint(self, directory: str, metadata: dict[str, Any]) -> None:
        """``directory/critic/``: a Hugging Face sequence-classification folder plus the optimizer's
        shards and schedule; ``directory/rng/``: this rank's random state."""
        self.engine.save(Path(directory) / "critic", self.tokenizer, metadata)
        save_rank_rng(Path(directory) / "rng", self.role)

    @dispatch("broadcast")
    def load_checkpoint(self, directory: str) -> None:
        self.engine.load(Path(directory) / "critic")
        load_rank_rng(Path(directory) / "rng", self.role)

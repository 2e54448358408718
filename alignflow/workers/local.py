"""Workers in this process: `LocalWorkerGroup` and the builder of a full local RL worker set.

``build_local_workers`` is the only place that knows the workers are local; a Ray version would
build the same roles as ``RayWorkerGroup``s (see ``workers/base.py``) and hand the controller
the same :class:`~alignflow.workers.base.RLWorkers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from typing import Any

import torch
from rich.console import Console
from torch import nn

from alignflow.config.rl import RLConfig, RolloutConfig
from alignflow.models import compile_blocks, disable_dropout, load_policy
from alignflow.rewards import RewardFunction, build_reward_function
from alignflow.rollout import HFRolloutEngine, SamplingParams
from alignflow.workers.actor import ActorWorker, RolloutWorker
from alignflow.workers.base import RLWorkers, WorkerGroup, collect, dispatch_mode, split_batch
from alignflow.workers.critic import CriticWorker, load_critic_model, resolve_critic_init
from alignflow.workers.reference import ReferenceWorker
from alignflow.workers.reward import RewardWorker


class LocalWorkerGroup(WorkerGroup):
    """Workers held in this process; ``call`` dispatches like a distributed group would.

    With one worker (the usual case) a call is a plain method call. Several workers are allowed
    for roles without training state (reward, reference), where splitting a batch across them
    and concatenating the results must equal one worker's answer; it exercises the same
    split/collect path a Ray group uses.
    """

    def __init__(self, workers: object | Sequence[object]) -> None:
        self.workers = list(workers) if isinstance(workers, (list, tuple)) else [workers]
        if not self.workers:
            raise ValueError("a worker group needs at least one worker")

    @property
    def world_size(self) -> int:
        return len(self.workers)

    @property
    def worker(self) -> object:
        """Rank 0's worker (tests and local tooling may inspect it; the controller never does)."""
        return self.workers[0]

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        mode = dispatch_mode(self.workers[0], method)
        if self.world_size == 1:
            return getattr(self.workers[0], method)(*args, **kwargs)
        if mode == "split":
            batch, *rest = args
            shards = split_batch(batch, self.world_size)
            return collect([getattr(w, method)(s, *rest, **kwargs) for w, s in zip(self.workers, shards)])
        return collect([getattr(w, method)(*args, **kwargs) for w in self.workers])


def sampling_params(cfg: RolloutConfig) -> SamplingParams:
    return SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                          top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty, do_sample=True,
                          stop_strings=tuple(cfg.stop_strings), n=cfg.n)


def rollout_module(policy: nn.Module, weights: str) -> nn.Module:
    """The module the rollout engine samples from: the policy itself (``shared``), or its bf16 copy
    (``bf16``); ``weights`` as resolved by :attr:`RLConfig.rollout_weights`."""
    if weights == "shared":
        return policy
    # Seed deepcopy's memo with bf16 parameters, so no second fp32 copy is ever materialised
    # (tied weights stay tied: they are one parameter object).
    memo = {id(p): nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False) for p in policy.parameters()}
    return deepcopy(policy, memo).to(torch.bfloat16).eval()


def optimizer_updates(cfg: RLConfig, steps: int | None = None) -> int:
    """Optimizer steps over ``steps`` PPO steps (default: the whole run): the LR schedule's length."""
    steps = cfg.train.steps if steps is None else steps
    return steps * cfg.train.ppo_epochs * (cfg.rows_per_step // cfg.train.mini_batch_size)


def build_local_workers(cfg: RLConfig, *, reward_fn: RewardFunction | None = None,
                        console: Console | None = None) -> tuple[RLWorkers, Any]:
    """All roles for ``cfg`` in this process, and the policy tokenizer.

    The policy module is shared by the actor, the rollout engine (unless ``rollout.weights`` gives it
    a bf16 copy) and, under LoRA, the reference.
    ``reward_fn`` overrides the config's reward (tests, notebooks).
    """
    console = console or Console()
    dtype, temperature = cfg.model.dtype, cfg.rollout.temperature
    policy, tokenizer = load_policy(cfg.model)  # dropout already off when cfg.model.disable_dropout
    # Before any update: a frozen copy of the initial policy, or the LoRA model with adapters off.
    reference = ReferenceWorker.from_policy(policy, temperature=temperature, dtype=dtype)
    engine = HFRolloutEngine.from_tokenizer(rollout_module(policy, cfg.rollout_weights), tokenizer)
    rollout = RolloutWorker(engine, sampling_params(cfg.rollout), eos_token_ids=list(engine.eos_token_ids),
                            pad_token_id=engine.pad_token_id, eval_greedy=cfg.rollout.eval_greedy, dtype=dtype,
                            weights_source=None if engine.model is policy else policy)
    if cfg.train.compile:  # after the reference and rollout copies are taken (see compile_blocks)
        compile_blocks(policy)
    actor = ActorWorker(policy, tokenizer, algorithm=cfg.algorithm, train=cfg.train, temperature=temperature,
                        total_updates=optimizer_updates(cfg, cfg.train.steps - cfg.train.critic_warmup), dtype=dtype,
                        loss_norm_const=float(cfg.rollout.max_new_tokens))
    if reward_fn is None:
        reward_fn = build_reward_function(rewards=cfg.reward_specs, dtype=dtype)
    critic = None
    if cfg.needs_critic:
        init, reason = resolve_critic_init(cfg.algorithm.critic_init, cfg.reward_model, tokenizer)
        console.print(f"critic: {reason}")
        model, critic_tokenizer, offset = load_critic_model(init, cfg.model, cfg.reward_model)
        if cfg.model.disable_dropout:
            disable_dropout(model)
        if cfg.train.compile:
            compile_blocks(model)
        critic = LocalWorkerGroup(CriticWorker(model, critic_tokenizer, algorithm=cfg.algorithm, train=cfg.train,
                                               total_updates=optimizer_updates(cfg), dtype=dtype, offset=offset))
    reward = RewardWorker(reward_fn, tokenizer)
    workers = RLWorkers(actor=LocalWorkerGroup(actor), rollout=LocalWorkerGroup(rollout),
                        reference=LocalWorkerGroup(reference), reward=LocalWorkerGroup(reward), critic=critic)
    return workers, tokenizer

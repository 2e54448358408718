"""The policy worker: one rank's actor, rollout engine and reference, built from the config.

* **actor**: the policy being trained, in a :class:`~alignflow.workers.engine.TrainingEngine`
  (FSDP2-sharded over several ranks). Log-probs are always recomputed by one forward over prompt +
  response with the logits divided by the sampling temperature (Huang et al. 2024, detail 11): the
  sampler's own log-probs come from a KV-cached loop and, with top-k/top-p, from a truncated
  distribution, so they are kept only as a diagnostic.
* **rollout**: an :class:`~alignflow.rollout.HFRolloutEngine` over either the actor's own module
  (``rollout.weights: shared``, one unsharded process) or a full copy of the weights (bf16, fp32,
  or int8 re-quantised at each sync) that :meth:`PolicyWorker.sync_rollout_weights` refreshes: the
  controller calls it, timed, after every update. A sharded actor always samples from a copy, since
  decoding one token at a time cannot wait on the other ranks.
* **reference**: a frozen copy of the initial policy, or under LoRA the actor's own module with its
  adapters off (peft's ``disable_adapter()``), which *is* the initial policy.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from alignflow.algorithms import (
    aggregate_loss,
    get_policy_loss,
    kl_estimate,
    truncate_after_eos,
    truncated_is_weights,
)
from alignflow.batch import Batch
from alignflow.config.loader import ConfigError
from alignflow.config.rl import RLConfig, RolloutConfig
from alignflow.config.schema import ModelConfig
from alignflow.models import compile_blocks, load_policy
from alignflow.models.forward import HeadAtPositions, packs_exactly, response_logprobs
from alignflow.models.loading import transformer_blocks
from alignflow.models.shared_prefix import use_shared_prefix
from alignflow.rollout import HFRolloutEngine, SamplingParams
from alignflow.rollout.int8 import quantize_linears
from alignflow.rollout.linears import load_full_precision, pack_linears, packing_supported
from alignflow.rollout.sampling import seed_for
from alignflow.runtime import autocast, effective_dtype, native_bf16, resolve_device
from alignflow.workers.base import dispatch
from alignflow.workers.engine import TrainingEngine, is_sharded, load_rank_rng, save_rank_rng, shard

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def sampling_params(cfg: RolloutConfig) -> SamplingParams:
    return SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                          top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty, do_sample=True,
                          stop_strings=tuple(cfg.stop_strings), n=cfg.n)


def rollout_module(policy: nn.Module, weights: str) -> nn.Module:
    """The module the rollout engine samples from: the policy itself (``shared``), or a frozen
    copy in bf16, fp32 or int8 (``alignflow.rollout.int8``); ``weights`` as resolved by
    :attr:`RLConfig.rollout_weights`."""
    if weights == "shared":
        return policy
    device_type = next(policy.parameters()).device.type
    if weights == "int8":
        # The int8 kernel is measured (and only fast) on a CPU, with bf16 activations: with fp32
        # ones it runs ~20x slower than an fp32 GEMM.
        if device_type != "cpu" or not native_bf16("cpu"):
            raise ConfigError("rollout.weights=int8 needs a CPU with native bf16 (AVX512-BF16 or AMX), the only "
                              f"place its kernel was measured to pay off; this actor is on {device_type}"
                              f"{'' if device_type != 'cpu' else ' without native bf16'}: use rollout.weights=bf16")
        # The LM head stays bf16 (tied to the embedding where the model ties them): quantised, it decoded
        # slower end to end in bench/int8_decode.py, and above 8 rows it would be dequantised every step.
        copy_ = quantize_linears(float_copy(policy, torch.bfloat16), torch.bfloat16, lm_head=False)
        copy_ = packed_for_sampling(copy_)  # the LM head (the int8 block layers are no nn.Linear)
        load_full_precision(copy_, policy.state_dict())  # quantised from the fp32 weights, as every sync does
        return copy_
    dtype = torch.bfloat16 if effective_dtype(weights, device_type) == "bf16" else torch.float32
    return packed_for_sampling(float_copy(policy, dtype))


def packed_for_sampling(module: nn.Module) -> nn.Module:
    """``module`` with its linear layers packed in place where that pays: a CPU bf16 module decodes
    from oneDNN-packed weights, same outputs, 1.2-1.8x faster matmuls at decode sizes
    (alignflow.rollout.linears). Not under LoRA: peft's layers read their weights."""
    first = next(module.parameters())
    if first.device.type == "cpu" and packing_supported(first.dtype) and not is_peft_model(module):
        return pack_linears(module, first.dtype)
    return module


def load_sampling_policy(cfg: ModelConfig, weights: str) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """A policy for sampling only, with nothing trained beside it: loaded straight in the rollout
    dtype (``weights`` as resolved by :func:`~alignflow.config.rl.resolve_rollout_weights`) and
    packed in place, so no fp32 weights stay in memory beside the copy :func:`rollout_module` would
    make. int8 is quantised from the fp32 weights, which it then drops."""
    dtype = torch.bfloat16 if effective_dtype(weights) == "bf16" else torch.float32  # loads on the CPU
    # Nothing is trained: no fresh LoRA adapters (zero at init; they would block packing), no checkpointing.
    cfg = replace(cfg, gradient_checkpointing=False, lora=replace(cfg.lora, enabled=False))
    policy, tokenizer = load_policy(cfg, dtype=dtype)
    if weights == "int8":
        return rollout_module(policy, weights), tokenizer
    policy.eval().requires_grad_(False)
    return packed_for_sampling(policy), tokenizer


def sampling_precision(module: nn.Module | None, dtype: str, device_type: str) -> contextlib.AbstractContextManager:
    """The autocast a rollout engine samples under: none for a copy already in bf16 (rollout.weights
    bf16 or int8), which computes in bf16 by itself, where autocast would only add dispatch work
    (SmolLM2-135M, 8 rows x 64 tokens on 2 AVX512-BF16 cores: 3.5-3.6 s a call without it, 4.0-4.5 s
    with it); else ``dtype``'s. ``module``: the engine's (None for vLLM, which holds none)."""
    if isinstance(module, nn.Module) and next(module.parameters()).dtype == torch.bfloat16:
        return contextlib.nullcontext()
    return autocast(dtype, device_type)


def float_copy(policy: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A frozen copy of ``policy`` in ``dtype``, in eval mode."""
    # Seed deepcopy's memo with the cast parameters, so no second fp32 copy is materialised on the
    # way (tied weights stay tied: they are one parameter object).
    memo = {id(p): nn.Parameter(p.detach().to(dtype, copy=True), requires_grad=False) for p in policy.parameters()}
    return copy.deepcopy(policy, memo).to(dtype).eval()


def vllm_engine(policy: nn.Module, tokenizer, cfg: RLConfig):
    """The vLLM rollout engine over the initial policy (a config error where vLLM cannot run: this
    worker may be a Ray actor on another node than the one that validated the config)."""
    from alignflow.rollout.vllm import engine_for_policy, vllm_unavailable_reason

    if reason := vllm_unavailable_reason():
        raise ConfigError(reason)
    weights = cfg.model.dtype if cfg.rollout.weights == "auto" else cfg.rollout.weights
    return engine_for_policy(policy, tokenizer, dtype={"bf16": "bfloat16", "fp32": "float32"}[weights],
                             max_model_len=cfg.data.max_prompt_length + cfg.rollout.max_new_tokens)


def optimizer_updates(cfg: RLConfig, steps: int | None = None) -> int:
    """Optimizer steps over ``steps`` RL steps (default: the whole run): the LR schedule's length."""
    steps = cfg.train.steps if steps is None else steps
    return steps * cfg.train.ppo_epochs * (cfg.rows_per_step // cfg.train.mini_batch_size)


def is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def update_order(batch: Batch, seed: int, step: int, salt: int, epochs: int, mini_batch_size: int) -> list[Batch]:
    """The global mini-batches of an update: ``epochs`` fresh shuffles seeded by (seed, step, salt),
    so every rank (and a resumed run) cuts the same ones."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step + salt)
    return [m for _ in range(epochs) for m in batch.shuffle(generator).split(mini_batch_size)]


class PolicyWorker:
    """``generate``, ``sync_rollout_weights``, ``compute_ref_logprobs``, ``compute_logprobs``,
    ``update`` / ``update_on_policy``, checkpoints. Built from ``(config, role)``; models load in
    :meth:`init_model` on the worker's own side."""

    def __init__(self, config: RLConfig, role: str = "policy") -> None:
        self.cfg, self.role = config, role

    def init_model(self) -> None:
        cfg = self.cfg
        self.device = resolve_device()
        policy, self.tokenizer = load_policy(cfg.model)  # dropout already off when cfg.model.disable_dropout
        policy.to(self.device)
        packs_exactly(policy)  # decided once on the whole model, before it is sharded
        # Each prompt once for all its samples in every pass (the reference copy has the same attention).
        self.share = use_shared_prefix(policy, cfg.model.name, "train.share_prompt",
                                       cfg.train.share_prompt_request)
        self.lora = is_peft_model(policy)
        # Before any update: a frozen copy of the initial policy, or the LoRA model with adapters off.
        # Sharded like the actor, it computes in the actor's precision (KL 0 at step 0) on a shard.
        self.reference = None if self.lora else HeadAtPositions(float_copy(policy, torch.float32), "lm")
        if self.reference is not None and is_sharded():
            packs_exactly(self.reference.model)  # decided on the whole copy, before it is sharded
            shard(self.reference, transformer_blocks(self.reference.model), cfg.model.dtype, self.device,
                  cfg.distributed.offload)
        if cfg.rollout.engine == "vllm":  # vLLM holds its own copy: no module to sample from here
            self.rollout_model = None
            self.rollout = vllm_engine(policy, self.tokenizer, cfg)
        else:
            self.rollout_model = rollout_module(policy, cfg.rollout_weights)
            self.rollout = HFRolloutEngine.from_tokenizer(self.rollout_model, self.tokenizer)
        self.sampling = sampling_params(cfg.rollout)
        if cfg.train.compile:  # after the reference and rollout copies are taken (see compile_blocks)
            compile_blocks(policy)
        train = cfg.train
        self.actor = TrainingEngine(
            policy, head="lm", optim_cfg=train.optim_config(train.actor_lr), dtype=cfg.model.dtype,
            total_updates=optimizer_updates(cfg, train.steps - train.critic_warmup), device=self.device,
            offload=cfg.distributed.offload)
        self.policy_loss = get_policy_loss(cfg.algorithm.policy_loss)
        self.is_cap = cfg.is_cap
        if self.is_cap is not None and "is_weights" not in inspect.signature(self.policy_loss).parameters:
            raise ConfigError(f"algorithm.policy_loss={cfg.algorithm.policy_loss!r} takes no is_weights, so it "
                              "cannot apply rollout.is_cap: set rollout.is_cap=0 or add the argument")
        self.loss_norm_const = float(cfg.rollout.max_new_tokens)

    @property
    def eos_token_ids(self) -> list[int]:
        return list(self.rollout.eos_token_ids)

    # ----- rollout ----------------------------------------------------------------------------

    @dispatch("broadcast")
    def sync_rollout_weights(self) -> dict[str, float]:
        """Copy the actor's current weights into the rollout engine's copy (gathered from every
        rank when sharded); nothing to do when the engine samples from the actor's own module."""
        if self.rollout_model is self.actor.model:
            return {}
        if self.rollout_model is None:  # vLLM gathers the shards itself, one bucket at a time
            self.rollout.update_weights(self.actor.model.state_dict())
        else:
            self.rollout.update_weights(self.actor.full_state_dict(all_ranks=True))
        return {}

    @dispatch("split")
    def generate(self, prompts: Batch, *, seed: int, eval_mode: bool = False) -> tuple[Batch, dict[str, float]]:
        """``prompts`` has meta ``prompt_token_ids`` and ``prompt_uid``; returns one row per sample
        with the prompt's meta repeated and the rollout tensors (see ``alignflow.rollout.base``),
        cut after the first EOS (detail 12), and ``generated_tokens`` / ``generation_time_s``.

        Sample ``j`` of the prompt with uid ``u`` draws from a generator seeded by (``seed``, u, j)
        alone, so a prompt gets the same samples on any rank and at any world size.
        ``eval_mode``: one sample per prompt, greedy when configured.
        """
        started = time.perf_counter()
        params = self.sampling
        if eval_mode:
            params = replace(params, n=1, do_sample=params.do_sample and not self.cfg.rollout.eval_greedy)
        prompt_seeds = [seed_for(seed, uid) for uid in prompts["prompt_uid"]]
        with sampling_precision(getattr(self.rollout, "model", None), self.cfg.model.dtype, self.device.type):
            out = self.rollout.generate(prompts["prompt_token_ids"], params, prompt_seeds)
        out = out.to("cpu")
        # Engines may keep sampling after EOS (or pad with a token equal to EOS): the first EOS
        # inside the engine's mask decides where each response ends.
        pad = self.rollout.pad_token_id
        ids = torch.where(out["response_mask"].bool(), out["response_ids"], pad)
        ids, keep, has_eos = truncate_after_eos(ids, self.eos_token_ids, pad)
        mask = keep * out["response_mask"].long()
        out.update(response_ids=ids, response_mask=mask, has_eos=has_eos,
                   sampling_logprobs=torch.where(mask.bool(), out["sampling_logprobs"], 0.0))
        out.info.clear()
        rows = prompts.repeat(params.n)
        rows.info.clear()
        return rows.union(out), {"generated_tokens": float(mask.sum()),
                                 "generation_time_s": time.perf_counter() - started}

    # ----- log-prob passes --------------------------------------------------------------------

    @dispatch("split")
    @torch.no_grad()
    def compute_ref_logprobs(self, batch: Batch) -> Batch:
        """``ref_logprobs`` ``(B, R)`` under the initial policy, 0 on padding."""
        batch = batch.to(self.device)
        module = self.actor.module if self.lora else self.reference
        adapters_off = self.actor.model.disable_adapter() if self.lora else contextlib.nullcontext()
        module.eval()
        with adapters_off, autocast(self.cfg.model.dtype, self.device.type):
            logprobs, _ = response_logprobs(module, batch, self.cfg.rollout.temperature, share=self.share)
        return Batch(tensors={"ref_logprobs": logprobs.float().cpu()})

    @dispatch("split")
    @torch.no_grad()
    def compute_logprobs(self, batch: Batch) -> Batch:
        """``old_logprobs`` (the behaviour policy for the PPO ratio) and ``entropy``, both ``(B, R)``."""
        batch = batch.to(self.device)
        self.actor.module.eval()
        with autocast(self.cfg.model.dtype, self.device.type):
            logprobs, entropy = response_logprobs(self.actor.module, batch, self.cfg.rollout.temperature,
                                                  with_entropy=True, share=self.share)
        return Batch(tensors={"old_logprobs": logprobs.float().cpu(), "entropy": entropy.float().cpu()})

    # ----- updates ----------------------------------------------------------------------------

    @dispatch("broadcast")
    def update(self, batch: Batch, *, step: int) -> dict[str, float]:
        """``ppo_epochs`` passes over ``batch`` (the whole rollout batch; every rank trains its part
        of each global mini-batch). Needs ``old_logprobs``, ``advantages`` (and ``ref_logprobs``
        with a KL loss). The shuffle is seeded by (seed, ``step``): a resumed run replays it."""
        train = self.cfg.train
        mini_batches = update_order(batch.to(self.device), train.seed, step, 1, train.ppo_epochs, train.mini_batch_size)
        self.actor.module.train()
        totals: dict[str, float] = {}
        for mini in mini_batches:
            for key, value in self._train_mini_batch(mini).items():
                totals[key] = totals.get(key, 0.0) + value / len(mini_batches)
        return {f"actor/{k}": v for k, v in totals.items()}

    @dispatch("broadcast")
    def update_on_policy(self, batch: Batch) -> tuple[Batch, dict[str, float]]:
        """One optimizer step over the whole ``batch``, sampled from the current weights and without
        ``old_logprobs``: the behaviour log-probs are this step's own forward, detached (ratio 1), so
        no separate pass computes them (TRL's GRPO skips it the same way when a batch gets one update).

        Returns this rank's rows' ``old_logprobs`` and ``entropy`` ``(B, R)`` as ``compute_logprobs``
        would have given them (the group concatenates the ranks' rows), and the step's metrics.
        """
        self.actor.module.train()
        behaviour: list[tuple[torch.Tensor, torch.Tensor]] = []
        stats = self._train_mini_batch(batch.to(self.device), behaviour)
        logprobs, entropy = (torch.cat(parts).cpu() for parts in zip(*behaviour))
        metrics = {f"actor/{k}": v for k, v in stats.items()}
        return Batch(tensors={"old_logprobs": logprobs, "entropy": entropy}), metrics

    def _train_mini_batch(self, mini: Batch, behaviour: list | None = None) -> dict[str, float]:
        """One optimizer step over ``mini``. Without ``old_logprobs`` in ``mini`` the forward's own
        detached log-probs stand in, appended with the entropy to ``behaviour``."""
        algo, temperature = self.cfg.algorithm, self.cfg.rollout.temperature

        def loss_fn(micro: Batch) -> tuple[torch.Tensor, dict[str, Any]]:
            with autocast(self.cfg.model.dtype, self.device.type):
                logprobs, entropy = response_logprobs(self.actor.module, micro, temperature, with_entropy=True,
                                                      share=self.share)
            if behaviour is not None:
                behaviour.append((logprobs.detach().float(), entropy.detach().float()))
            old_logprobs = micro["old_logprobs"] if behaviour is None else behaviour[-1][0]
            mask = micro["response_mask"]
            # Truncated IS for the sampler's mismatch; the KL and entropy terms are not reweighted.
            options = {}
            if self.is_cap is not None:
                options["is_weights"], _ = truncated_is_weights(old_logprobs, micro["sampling_logprobs"], mask,
                                                                self.is_cap)
            pg_loss, metrics = self.policy_loss(
                logprobs=logprobs, old_logprobs=old_logprobs, advantages=micro["advantages"],
                response_mask=mask, loss_agg_mode=algo.loss_agg_mode, clip_low=algo.clip_low,
                clip_high=algo.clip_high, dual_clip=algo.dual_clip, norm_const=self.loss_norm_const, **options)
            entropy_term = aggregate_loss(entropy, mask, algo.loss_agg_mode, self.loss_norm_const)
            loss = pg_loss
            if algo.entropy_coef:
                loss = loss - algo.entropy_coef * entropy_term  # entropy bonus
            if not algo.kl_in_reward and algo.kl_loss_coef > 0:
                kl = kl_estimate(logprobs, micro["ref_logprobs"], algo.kl_estimator)
                kl_loss = aggregate_loss(kl, mask, algo.loss_agg_mode, self.loss_norm_const)
                loss = loss + algo.kl_loss_coef * kl_loss
                metrics["kl_loss"] = kl_loss.detach()
            return loss, {"pg_loss": pg_loss.detach(), "entropy": entropy_term.detach(), "loss": loss.detach(),
                          **metrics}

        return self.actor.train_mini_batch(mini, micro_batch_size=self.cfg.train.micro_batch_size,
                                           loss_agg_mode=algo.loss_agg_mode, loss_fn=loss_fn)

    # ----- checkpoints ------------------------------------------------------------------------

    @dispatch("broadcast")
    def save_checkpoint(self, directory: str, metadata: dict[str, Any]) -> None:
        """``directory/policy/``: a Hugging Face folder plus the optimizer's shards and schedule;
        ``directory/rng/``: this rank's random state."""
        self.actor.save(Path(directory) / "policy", self.tokenizer, metadata)
        save_rank_rng(Path(directory) / "rng", self.role)

    @dispatch("broadcast")
    def load_checkpoint(self, directory: str) -> None:
        self.actor.load(Path(directory) / "policy")
        load_rank_rng(Path(directory) / "rng", self.role)

    @dispatch("broadcast")
    def save_model(self, directory: str, metadata: dict[str, Any]) -> None:
        """The policy as a plain Hugging Face folder (LoRA merged)."""
        self.actor.save_weights(Path(directory), self.tokenizer, metadata)

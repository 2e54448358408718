"""The actor (the policy being trained) and the rollout worker colocated with it.

The rollout worker samples with an engine built either on the actor's own module (every
generation uses the actor's current weights, nothing is copied) or on a separate inference copy,
e.g. in bf16, that ``engine.update_weights`` refreshes from the actor before every generate call.

Log-probs are always recomputed by one forward over prompt + response, with the logits divided by
the sampling temperature (Huang et al. 2024, detail 11): the rollout's own log-probs come from a
KV-cached loop and, with top-k/top-p, from a truncated distribution, so they are kept only as a
diagnostic.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignflow.algorithms import (
    aggregate_loss,
    entropy_from_logits,
    get_policy_loss,
    kl_estimate,
    logprobs_from_logits,
    truncate_after_eos,
)
from alignflow.batch import Batch
from alignflow.config.rl import AlgorithmConfig, RLTrainConfig
from alignflow.data.packing import pack_sequences
from alignflow.models.forward import causal_lm_parts, last_hidden_state, packs_exactly
from alignflow.models.saving import save_model
from alignflow.rollout import RolloutEngine, SamplingParams
from alignflow.runtime import autocast
from alignflow.runtime.optim import build_optimizer, build_scheduler
from alignflow.workers.base import (
    add_weighted,
    dispatch,
    load_trainable,
    micro_batch_weights,
    save_trainable,
    step_optimizer,
)


def sequence_inputs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt (left-padded) + response (right-padded) ids and attention mask, ``(B, P + R)``."""
    ids = torch.cat([batch["prompt_ids"], batch["response_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["response_mask"]], dim=1)
    return ids, mask


def response_hidden(model, batch: Batch) -> torch.Tensor:
    """Hidden states that predict each response token, ``(B, R, d)``; callers mask past each
    response's end.

    Position ``P - 1 + t`` (the last prompt token, then response tokens) scores response token
    ``t``. A causal decoder that keeps packed sequences apart runs padding-free: each row's real
    prompt and response tokens are packed back to back, so neither the left padding of short
    prompts nor the right padding of short responses is computed. Other models run the padded rows,
    with positions from the attention mask so that left padding does not shift them.
    """
    if packs_exactly(model):
        return _packed_response_hidden(model, batch)
    return _padded_response_hidden(model, batch)


def _padded_response_hidden(model, batch: Batch) -> torch.Tensor:
    ids, mask = sequence_inputs(batch)
    hidden = last_hidden_state(model, ids, mask)
    prompt_len, response_len = batch["prompt_ids"].shape[1], batch["response_ids"].shape[1]
    return hidden[:, prompt_len - 1 : prompt_len - 1 + response_len]


def _packed_response_hidden(model, batch: Batch) -> torch.Tensor:
    """``response_hidden`` over packed rows as wide as the padded ones (zeros past each response)."""
    prompt_ids, response_ids = batch["prompt_ids"], batch["response_ids"]
    prompt_mask = batch["prompt_mask"].bool()
    prompt_lengths, response_lengths = prompt_mask.sum(-1), batch["response_mask"].sum(-1)
    sequences = [torch.cat([p[m], r[:n]]).tolist()
                 for p, m, r, n in zip(prompt_ids, prompt_mask, response_ids, response_lengths.tolist())]
    rows, width = response_ids.shape[0], prompt_ids.shape[1] + response_ids.shape[1]
    packed = {k: v.to(prompt_ids.device) for k, v in pack_sequences(sequences, width, pad_token_id=0).items()}
    hidden = last_hidden_state(model, packed["input_ids"], None, packed["position_ids"])
    response_len = response_ids.shape[1]
    sequence, t = (torch.arange(response_len, device=prompt_ids.device) < response_lengths[:, None]).nonzero(
        as_tuple=True)
    packed_row, start = packed["segments"][sequence].unbind(-1)
    states = hidden[packed_row, start + prompt_lengths[sequence] - 1 + t]
    out = hidden.new_zeros(rows * response_len, hidden.shape[-1]).index_copy(0, sequence * response_len + t, states)
    return out.view(rows, response_len, -1)


def response_logprobs(
    model, batch: Batch, temperature: float, *, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs ``(B, R)`` of the response tokens under ``softmax(logits / temperature)``, and
    optionally the entropy ``(B, R)`` of that distribution; both 0 on padding."""
    _, head = causal_lm_parts(model)
    logits = head(response_hidden(model, batch))
    mask = batch["response_mask"].to(torch.bool)
    logprobs = logprobs_from_logits(logits, batch["response_ids"], temperature)
    logprobs = torch.where(mask, logprobs, torch.zeros_like(logprobs))
    entropy = None
    if with_entropy:
        entropy = entropy_from_logits(logits, temperature)
        entropy = torch.where(mask, entropy, torch.zeros_like(entropy))
    return logprobs, entropy


class RolloutWorker:
    """``generate(prompts)``: sample responses, cut after the first EOS (detail 12)."""

    def __init__(self, engine: RolloutEngine, sampling: SamplingParams, *, eos_token_ids: list[int],
                 pad_token_id: int, eval_greedy: bool = True, dtype: str = "fp32",
                 weights_source: nn.Module | None = None) -> None:
        self.engine, self.sampling, self.eval_greedy, self.dtype = engine, sampling, eval_greedy, dtype
        self.weights_source = weights_source  # the actor's module when the engine holds its own copy
        self.eos_token_ids, self.pad_token_id = list(eos_token_ids), int(pad_token_id)

    @dispatch("split")
    def generate(self, prompts: Batch, *, seed: int | None = None, eval_mode: bool = False) -> Batch:
        """``prompts`` has meta ``prompt_token_ids``; returns one row per sample with the prompt's
        meta repeated, the rollout tensors (see ``alignflow.rollout.base``) and ``info["temperature"]``.

        ``eval_mode``: one sample per prompt, greedy when configured.
        """
        if self.weights_source is not None:  # after an update or a resume: sample from the current weights
            self.engine.update_weights(self.weights_source)
        params = replace(self.sampling, seed=seed)
        if eval_mode:
            params = replace(params, n=1, do_sample=params.do_sample and not self.eval_greedy)
        with autocast(self.dtype):
            out = self.engine.generate(prompts["prompt_token_ids"], params)
        # Engines may keep sampling after EOS (or pad with a token equal to EOS): the first EOS
        # inside the engine's mask decides where each response ends.
        ids = torch.where(out["response_mask"].bool(), out["response_ids"], self.pad_token_id)
        ids, keep, has_eos = truncate_after_eos(ids, self.eos_token_ids, self.pad_token_id)
        mask = keep * out["response_mask"].long()
        out.update(response_ids=ids, response_mask=mask, has_eos=has_eos,
                   sampling_logprobs=torch.where(mask.bool(), out["sampling_logprobs"], 0.0))
        out.info.update(temperature=params.temperature if params.do_sample else 1.0, generated_tokens=int(mask.sum()))
        rows = prompts.repeat(params.n)
        rows.info.clear()
        return rows.union(out)


class ActorWorker:
    """The policy: recomputes log-probs and runs the PPO update with its own optimizer."""

    def __init__(self, model, tokenizer, *, algorithm: AlgorithmConfig, train: RLTrainConfig, temperature: float,
                 total_updates: int, dtype: str = "fp32", loss_norm_const: float | None = None) -> None:
        self.model, self.tokenizer, self.algorithm, self.train_cfg = model, tokenizer, algorithm, train
        self.temperature, self.dtype, self.loss_norm_const = temperature, dtype, loss_norm_const
        optim_cfg = train.optim_config(train.actor_lr)
        self.optimizer = build_optimizer(model, optim_cfg)
        self.scheduler = build_scheduler(self.optimizer, optim_cfg, total_updates)
        self.policy_loss = get_policy_loss(algorithm.policy_loss)

    @dispatch("split")
    @torch.no_grad()
    def compute_logprobs(self, batch: Batch) -> Batch:
        """``old_logprobs`` (the behaviour policy for the PPO ratio) and ``entropy``, both ``(B, R)``."""
        self.model.eval()
        with autocast(self.dtype):
            logprobs, entropy = response_logprobs(self.model, batch, self.temperature, with_entropy=True)
        return Batch(tensors={"old_logprobs": logprobs, "entropy": entropy})

    @dispatch("split")
    def update(self, batch: Batch) -> dict[str, float]:
        """``ppo_epochs`` passes over ``batch`` in fresh shuffles of ``mini_batch_size`` rows.

        Needs ``old_logprobs``, ``advantages`` (and ``ref_logprobs`` with a KL loss). The shuffle
        is seeded by (seed, ``batch.info["step"]``), so a resumed run replays the same order.
        """
        cfg = self.train_cfg
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + int(batch.info.get("step", 0)) + 1)
        totals: dict[str, float] = {}
        mini_batches = [m for _ in range(cfg.ppo_epochs) for m in batch.shuffle(generator).split(cfg.mini_batch_size)]
        self.model.train()
        for mini in mini_batches:
            add_weighted(totals, self._optimizer_step(mini), 1.0 / len(mini_batches))
        return {f"actor/{k}": v for k, v in totals.items()}

    @dispatch("split")
    def update_on_policy(self, batch: Batch) -> Batch:
        """One optimizer step over the whole ``batch``, sampled from the current weights and without
        ``old_logprobs``: the behaviour log-probs are this step's own forward, detached (ratio 1), so
        no separate pass computes them (TRL's GRPO skips it the same way when a batch gets one update).

        Returns ``old_logprobs`` and ``entropy`` ``(B, R)`` as ``compute_logprobs`` would have given
        them, and the step's metrics in ``info["metrics"]``.
        """
        self.model.train()
        behaviour: list[tuple[torch.Tensor, torch.Tensor]] = []
        stats = self._optimizer_step(batch, behaviour)
        logprobs, entropy = (torch.cat(parts) for parts in zip(*behaviour))
        return Batch(tensors={"old_logprobs": logprobs, "entropy": entropy},
                     info={"metrics": {f"actor/{k}": v for k, v in stats.items()}})

    def _optimizer_step(self, mini: Batch, behaviour: list | None = None) -> dict[str, Any]:
        """One optimizer step over ``mini`` in micro-batches. Without ``old_logprobs`` in ``mini``
        the forward's own detached log-probs stand in, appended with the entropy to ``behaviour``."""
        algo = self.algorithm
        micro_batches = mini.split(self.train_cfg.micro_batch_size)
        stats: dict[str, float] = {}
        for micro, weight in zip(micro_batches, micro_batch_weights(micro_batches, algo.loss_agg_mode)):
            with autocast(self.dtype):
                logprobs, entropy = response_logprobs(self.model, micro, self.temperature, with_entropy=True)
            if behaviour is not None:
                behaviour.append((logprobs.detach().float(), entropy.detach().float()))
            old_logprobs = micro["old_logprobs"] if behaviour is None else behaviour[-1][0]
            mask = micro["response_mask"]
            pg_loss, metrics = self.policy_loss(
                logprobs=logprobs, old_logprobs=old_logprobs, advantages=micro["advantages"],
                response_mask=mask, loss_agg_mode=algo.loss_agg_mode, clip_low=algo.clip_low,
                clip_high=algo.clip_high, dual_clip=algo.dual_clip, norm_const=self.loss_norm_const)
            entropy_term = aggregate_loss(entropy, mask, algo.loss_agg_mode, self.loss_norm_const)
            loss = pg_loss
            if algo.entropy_coef:
                loss = loss - algo.entropy_coef * entropy_term  # entropy bonus
            if not algo.kl_in_reward and algo.kl_loss_coef > 0:
                kl = kl_estimate(logprobs, micro["ref_logprobs"], algo.kl_estimator)
                kl_loss = aggregate_loss(kl, mask, algo.loss_agg_mode, self.loss_norm_const)
                loss = loss + algo.kl_loss_coef * kl_loss
                metrics["kl_loss"] = kl_loss.detach()
            (loss * weight).backward()
            add_weighted(stats, {"pg_loss": pg_loss.detach(), "entropy": entropy_term.detach(), "loss": loss.detach(),
                                 **metrics}, weight)
        stats.update(step_optimizer(self.model, self.optimizer, self.scheduler, self.train_cfg.max_grad_norm))
        return stats

    @dispatch("broadcast")
    def save_checkpoint(self, directory: str, metadata: dict[str, Any]) -> None:
        """``directory/policy/`` (a Hugging Face folder) and ``directory/actor_state.pt``."""
        save_trainable(self.model, self.tokenizer, self.optimizer, self.scheduler, Path(directory) / "policy",
                       Path(directory) / "actor_state.pt", metadata)

    @dispatch("broadcast")
    def load_checkpoint(self, directory: str) -> None:
        load_trainable(self.model, self.optimizer, self.scheduler, Path(directory) / "policy",
                       Path(directory) / "actor_state.pt")

    @dispatch("broadcast")
    def save_model(self, directory: str, metadata: dict[str, Any]) -> None:
        """The policy as a plain Hugging Face folder (LoRA merged)."""
        save_model(self.model, self.tokenizer, directory, metadata)


"""RLHF on a single-controller dataflow: one process drives worker groups with Batches.

One step, top to bottom (:meth:`RLController.train_step`)::

    prompts -> policy.sync_rollout_weights  the rollout engine gets the actor's weights (after updates)
            -> policy.generate ----------- sample, cut after the first EOS
            -> reward.compute_scores ----- the reward function / reward model on the decoded text
            -> policy.compute_ref_logprobs, policy.compute_logprobs   (logits / temperature)
            -> critic.compute_values ----- only when the estimator needs values (GAE)
            -> shape_rewards ------------- missing-EOS penalty, -beta*KL per token, score at the last token
            -> compute_advantages -------- the configured estimator (GAE, GRPO, RLOO, ...)
            -> critic.update, policy.update  (PPO epochs over shuffled global mini-batches)
            -> metrics, alerts, KL controller, checkpoint

With one optimizer step per batch and the KL outside the reward, the update is on-policy: the
behaviour log-probs come from the update's own forward (``policy.update_on_policy``) and the
separate ``policy.compute_logprobs`` pass is skipped.

The math lives in ``alignflow.algorithms`` and is chosen by config names; the controller only
routes Batches and metric dicts, so GRPO or RLOO is a config change, and one process or Ray worker
groups over several ranks is the worker builder's choice (``distributed.backend``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from alignflow.algorithms import (
    apply_missing_eos_penalty,
    build_kl_controller,
    explained_variance,
    get_advantage_estimator,
    kl_estimate,
    kl_penalized_token_rewards,
    masked_mean,
    masked_sum,
    masked_var,
    score_token_rewards,
    truncated_is_weights,
    whiten_rewards,
)
from alignflow.batch import Batch
from alignflow.config.loader import to_dict
from alignflow.config.rl import AlgorithmConfig, RLConfig
from alignflow.data.formatting import ChatFormatter
from alignflow.data.prepare import write_jsonl
from alignflow.data.readers import read_prompts
from alignflow.data.tokenize import PromptResponseEncoder
from alignflow.data.types import Message
from alignflow.models import load_tokenizer
from alignflow.reporting.alerts import AlertMonitor
from alignflow.reporting.curves import plot_rlhf_curves
from alignflow.reporting.metrics_logger import MetricsLogger, format_metrics, read_metrics
from alignflow.rewards.guard import RewardError
from alignflow.runtime import rng_state, set_rng_state
from alignflow.runtime.state_io import fault_point, save_state
from alignflow.trainers.checkpoint import (
    STATE_FILE,
    checkpoint_root,
    latest_checkpoint,
    load_checkpoint_state,
    publish_checkpoint,
)
from alignflow.trainers.data_setup import load_train_val
from alignflow.trainers.loop import TrainingError, divergence_advice
from alignflow.trainers.resume_check import OFFLINE_RESUMABLE, any_value, only_upward
from alignflow.trainers.run_setup import finished_summary, resume_or_start_afresh, start_run
from alignflow.workers.base import NonFiniteWeightsError, RLWorkers

CURVES_FILE = "rlhf_training_curves.png"
EVAL_SAMPLES_DIR = "eval_samples"
CONSOLE_KEYS = ["reward/raw_mean", "reward/total_mean", "kl/ref", "policy/entropy", "response/length_mean",
                "response/eos_rate", "actor/clip_fraction", "critic/value_loss", "perf/tokens_per_s"]


# ----------------------------------------------------------------------------- prompts and data order


@dataclass
class PromptSet:
    """Tokenized prompts with what travels with them (chat messages, references, sources)."""

    messages: list[list[Message]] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)
    references: list[str | None] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.token_ids)

    def batch(self, indices: list[int], uids: list[int]) -> Batch:
        """Rows ``indices``; ``prompt_uid`` groups the samples of one prompt occurrence."""
        return Batch(meta={
            "prompt": [self.messages[i] for i in indices],
            "prompt_token_ids": [self.token_ids[i] for i in indices],
            "reference": [self.references[i] for i in indices],
            "source": [self.sources[i] for i in indices],
            "prompt_uid": list(uids),
        })


def encode_prompts(examples, encoder: PromptResponseEncoder) -> tuple[PromptSet, int]:
    """``PromptExample``s -> a :class:`PromptSet` and the number of prompts cut from the left."""
    prompts, cut = PromptSet(), 0
    for example in examples:
        ids, truncated = encoder.encode_prompt(example.prompt)
        cut += truncated
        prompts.messages.append(example.prompt)
        prompts.token_ids.append(ids)
        prompts.references.append(example.reference)
        prompts.sources.append(example.source)
    return prompts, cut


@functools.lru_cache(maxsize=8)
def _permutation(seed: int, epoch: int, n: int) -> tuple[int, ...]:
    return tuple(torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist())


def prompt_order(position: int, count: int, n_prompts: int, seed: int) -> list[int]:
    """Dataset indices at positions ``[position, position + count)`` of the prompt stream.

    The stream is one fresh permutation of the prompts per pass, drawn from (seed, pass), so the
    order is a pure function of the position: resuming at a saved position replays it exactly.
    """
    return [_permutation(seed, k // n_prompts, n_prompts)[k % n_prompts] for k in range(position, position + count)]


# ----------------------------------------------------------------------------- the math stages (pure)


def shape_rewards(batch: Batch, algorithm: AlgorithmConfig, kl_coef: float) -> Batch:
    """Per-token rewards from sequence scores (Huang et al. 2024, details 13, 14 and 16).

    ``scores``: the raw score, replaced by ``missing_eos_penalty`` for responses without EOS.
    ``token_rewards``: ``-kl_coef * KL_t`` on every token (only when ``kl_in_reward``, which needs
    ``old_logprobs``) plus the score at the last real token, optionally whitened.
    """
    scores = batch["raw_scores"]
    if algorithm.missing_eos_penalty is not None:
        scores = apply_missing_eos_penalty(scores, batch["has_eos"], algorithm.missing_eos_penalty)
    if algorithm.kl_in_reward:
        token_rewards, _ = kl_penalized_token_rewards(scores, batch["old_logprobs"], batch["ref_logprobs"],
                                                      batch["response_mask"], kl_coef, algorithm.kl_estimator)
    else:
        token_rewards = score_token_rewards(scores, batch["response_mask"])
    if algorithm.whiten_rewards:
        token_rewards = whiten_rewards(token_rewards, batch["response_mask"])
    return batch.union(Batch(tensors={"scores": scores, "token_rewards": token_rewards}))


def token_kl(batch: Batch, algorithm: AlgorithmConfig) -> Batch:
    """``kl``: the per-token KL estimate of the behaviour policy to the reference (0 on padding)."""
    kl = kl_estimate(batch["old_logprobs"].float(), batch["ref_logprobs"].float(), algorithm.kl_estimator)
    return batch.union(Batch(tensors={"kl": torch.where(batch["response_mask"].bool(), kl, torch.zeros_like(kl))}))


def compute_advantages(batch: Batch, algorithm: AlgorithmConfig) -> Batch:
    """``advantages`` and ``returns`` from the estimator named by ``algorithm.adv_estimator``."""
    estimator = get_advantage_estimator(algorithm.adv_estimator)
    advantages, returns = estimator(
        token_rewards=batch["token_rewards"], values=batch.tensors.get("values"),
        response_mask=batch["response_mask"], group_ids=batch["prompt_uid"], gamma=algorithm.gamma,
        lam=algorithm.lam, whiten_advantages=algorithm.whiten_advantages, **algorithm.estimator_options)
    return batch.union(Batch(tensors={"advantages": advantages, "returns": returns}))


def rollout_metrics(batch: Batch, is_cap: float | None = None) -> dict[str, float]:
    """What the rollout batch says about the policy (before the update).

    ``reward/raw_*``: the reward function's scores; ``reward/score_*``: after the missing-EOS
    penalty; ``reward/total_*``: summed token rewards (score minus the KL penalty); ``kl/ref``: the
    per-token KL estimate summed over each response, averaged over responses. With truncated
    importance sampling on (``is_cap``): ``rollout/is_capped_fraction`` (tokens whose ratio
    pi_actor / pi_rollout exceeded the cap) and ``rollout/is_weight_mean``.
    """
    mask = batch["response_mask"]
    lengths = mask.sum(-1).float()

    def std(x: torch.Tensor) -> float:
        return float(x.float().std(correction=0))

    metrics = {
        "reward/raw_mean": float(batch["raw_scores"].mean()), "reward/raw_std": std(batch["raw_scores"]),
        "reward/score_mean": float(batch["scores"].mean()), "reward/score_std": std(batch["scores"]),
        "reward/total_mean": float(masked_sum(batch["token_rewards"], mask, dim=-1).mean()),
        "reward/total_std": std(masked_sum(batch["token_rewards"], mask, dim=-1)),
        "kl/ref": float(masked_sum(batch["kl"], mask, dim=-1).mean()),
        "kl/ref_per_token": float(masked_mean(batch["kl"], mask)),
        "policy/entropy": float(masked_mean(batch["entropy"], mask)),
        "response/length_mean": float(lengths.mean()), "response/length_max": float(lengths.max()),
        "response/eos_rate": float(batch["has_eos"].float().mean()),
        # |sampler log-prob - recomputed log-prob|: ~0 for plain sampling from fp32 weights; top-k/top-p
        # and a bf16 or int8 rollout copy make it grow.
        "rollout/logprob_gap": float(masked_mean((batch["sampling_logprobs"] - batch["old_logprobs"]).abs(), mask)),
        "advantages/mean": float(masked_mean(batch["advantages"], mask)),
        "advantages/std": float(masked_var(batch["advantages"], mask).sqrt()),
        "returns/mean": float(masked_mean(batch["returns"], mask)),
    }
    _, is_stats = truncated_is_weights(batch["old_logprobs"], batch["sampling_logprobs"], mask, is_cap)
    metrics.update({f"rollout/is_{k}": float(v) for k, v in is_stats.items()})
    if "values" in batch:
        metrics["critic/values_rollout_mean"] = float(masked_mean(batch["values"], mask))
        metrics["critic/explained_variance"] = float(explained_variance(batch["values"], batch["returns"], mask))
    return metrics


def eval_samples(batch: Batch, kl: torch.Tensor) -> list[dict[str, Any]]:
    """One JSON row per scored held-out response: the prompt's last message, response, score, KL."""
    return [{"prompt": prompt[-1]["content"], "response": text, "score": float(score), "kl": float(k),
             "length": int(length), "has_eos": bool(eos)}
            for prompt, text, score, k, length, eos in zip(
                batch["prompt"], batch["response_text"], batch["raw_scores"], kl, batch["response_mask"].sum(-1),
                batch["has_eos"])]


@contextlib.contextmanager
def timed(times: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    times[f"time/{phase}_s"] = times.get(f"time/{phase}_s", 0.0) + time.perf_counter() - start


# ----------------------------------------------------------------------------- the controller


@dataclass
class RLResult:
    model_dir: Path
    metrics: dict[str, float]
    eval_metrics: dict[str, float]
    history: list[dict[str, Any]]


class RLController:
    """Drives the worker groups through ``cfg.train.steps`` steps; owns no model."""

    def __init__(self, cfg: RLConfig, workers: RLWorkers, train_prompts: PromptSet, eval_prompts: PromptSet,
                 *, logger: MetricsLogger | None = None, console: Console | None = None) -> None:
        self.cfg, self.workers = cfg, workers
        self.train_prompts, self.eval_prompts = train_prompts, eval_prompts
        self.output_dir = Path(cfg.output_dir)
        self.console = console or Console()
        self.logger = logger or MetricsLogger(self.output_dir, console=self.console)
        algo = cfg.algorithm
        self.kl_ctl = (build_kl_controller("fixed", coef=algo.kl_coef) if algo.kl_controller == "fixed" else
                       build_kl_controller("adaptive", init_coef=algo.kl_coef, target=algo.target_kl,
                                           horizon=algo.horizon))
        self.alerts = AlertMonitor(cfg.alerts)
        # One optimizer step per batch (one epoch, one mini-batch) with the KL outside the reward:
        # the update's own forward is the behaviour policy, so no separate log-prob pass runs.
        self.single_update = (cfg.train.ppo_epochs == 1 and cfg.train.mini_batch_size == cfg.rows_per_step
                              and not algo.kl_in_reward)
        self.step = 0
        self.prompts_consumed = 0  # position in the prompt stream (the data order)
        self.history: list[dict[str, Any]] = []
        self.rollout_stale = True  # the rollout engine's weights lag the actor's until synced
        self.skipped_in_a_row = 0  # steps whose every update was skipped (non-finite gradients)

    def sync_rollout_weights(self, times: dict[str, float]) -> None:
        """Give the rollout engine the actor's current weights, once after each update (timed)."""
        if self.rollout_stale:
            with timed(times, "sync_weights"):
                self.workers.policy.sync_rollout_weights()
            self.rollout_stale = False

    # ----- one step ---------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One PPO iteration on the next ``prompts_per_step`` prompts; returns its metrics."""
        cfg, w, algo = self.cfg, self.workers, self.cfg.algorithm
        times: dict[str, float] = {}
        started = time.perf_counter()
        count = cfg.train.prompts_per_step
        positions = list(range(self.prompts_consumed, self.prompts_consumed + count))
        prompts = self.train_prompts.batch(
            prompt_order(self.prompts_consumed, count, len(self.train_prompts), cfg.train.seed), positions)

        self.sync_rollout_weights(times)
        with timed(times, "generate"):  # sample with the actor's weights; cut after the first EOS
            batch, generation = w.policy.generate(prompts, seed=cfg.train.seed * 1_000_003 + self.step)
        with timed(times, "score"):
            batch = batch.union(w.reward.compute_scores(batch))
        actor_trains = self.step >= cfg.train.critic_warmup  # the first steps may fit only the critic
        on_policy = actor_trains and self.single_update
        with timed(times, "logprobs"):  # reference and behaviour log-probs, logits / temperature
            batch = batch.union(w.policy.compute_ref_logprobs(batch))
            if not on_policy:
                batch = batch.union(w.policy.compute_logprobs(batch))
        if w.critic is not None:
            with timed(times, "values"):
                batch = batch.union(w.critic.compute_values(batch))
        batch = shape_rewards(batch, algo, kl_coef=self.kl_ctl.value)  # EOS penalty, KL penalty, score at EOS
        batch = compute_advantages(batch, algo)
        critic_metrics, actor_metrics = {}, {}
        if w.critic is not None:
            with timed(times, "critic_update"):
                critic_metrics = w.critic.update(batch, step=self.step)
        with timed(times, "actor_update"):
            if on_policy:  # the update's own forward gives the behaviour log-probs (and entropy)
                behaviour, actor_metrics = w.policy.update_on_policy(batch)
                batch = batch.union(behaviour)
            elif actor_trains:
                actor_metrics = w.policy.update(batch, step=self.step)
        self.rollout_stale = self.rollout_stale or actor_trains
        batch = token_kl(batch, algo)

        metrics = {**rollout_metrics(batch, cfg.is_cap), **critic_metrics, **actor_metrics,
                   "kl/coef": self.kl_ctl.value}
        self.kl_ctl.update(metrics["kl/ref"], n_steps=len(batch))
        self.prompts_consumed += count
        self.step += 1
        elapsed = time.perf_counter() - started
        metrics.update(times, **{"time/step_s": elapsed, "perf/tokens_per_s": generation["generated_tokens"] / elapsed,
                                 "data/prompts_consumed": float(self.prompts_consumed)})
        return metrics

    # ----- the run ----------------------------------------------------------------------------

    def fit(self) -> RLResult:
        """Resume when a checkpoint exists, evaluate at step 0, train ``train.steps`` steps (logging,
        alerts, periodic evaluation and checkpoints), then evaluate, save the policy and the curves."""
        cfg = self.cfg.train
        if self.cfg.resume:
            self.resume()
        self.logger.truncate_after(self.step if self.step else -1)  # steps redone after a kill log once
        eval_metrics = self.evaluate() if self.step == 0 else {}
        metrics: dict[str, float] = {}
        while self.step < cfg.steps:
            try:
                metrics = self.train_step()
            except RewardError as err:  # a NaN or failing reward: stop, naming what to resume from
                raise RewardError(f"{err}; {self.last_good_checkpoint()}") from None
            self.logger.log(self.step, metrics)
            self.history.append({"step": self.step, **metrics})
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                self.console.print(f"step {self.step}/{cfg.steps} {format_metrics(metrics, CONSOLE_KEYS)}")
            self.stop_if_updates_keep_failing(metrics)
            alerts = self.report_alerts(metrics)
            if alerts and self.cfg.alerts.stop_on_alert:
                path = self.save_checkpoint()
                raise TrainingError(f"stopped on alert at step {self.step} ({alerts[0].message}); "
                                    f"state saved in {path}; set alerts.stop_on_alert=false to train through")
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                eval_metrics = self.evaluate()
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.steps:
                self.save_checkpoint()
        eval_metrics = self.evaluate() or eval_metrics
        self.save_checkpoint()
        model_dir = self.output_dir / "model"
        self.workers.policy.save_model(str(model_dir), self.metadata(final_metrics=metrics))
        plot_rlhf_curves(read_metrics(self.logger.path), self.output_dir / CURVES_FILE)
        return RLResult(model_dir, metrics, eval_metrics, self.history)

    def stop_if_updates_keep_failing(self, metrics: dict[str, float]) -> None:
        """Stop after ``train.max_skipped_updates`` steps in a row whose every update was skipped
        (non-finite gradients): the weights no longer learn, whatever ``alerts.stop_on_alert`` says."""
        skipped = [v for k, v in metrics.items() if k.endswith("/skipped_update_frac")]
        self.skipped_in_a_row = self.skipped_in_a_row + 1 if skipped and max(skipped) >= 1.0 else 0
        limit = self.cfg.train.max_skipped_updates
        if self.skipped_in_a_row >= limit:
            raise TrainingError(f"stopped at step {self.step}: the updates of the last {limit} steps were all skipped "
                                f"(non-finite gradients; train.max_skipped_updates={limit}); "
                                f"{self.last_good_checkpoint()}; {divergence_advice(self.cfg.model.dtype)}")

    def last_good_checkpoint(self) -> str:
        ckpt = latest_checkpoint(self.output_dir)
        return f"the last good checkpoint is {ckpt}" if ckpt else "no checkpoint was saved yet"

    def evaluate(self) -> dict[str, float]:
        """Score held-out prompts (greedy or sampled, one response each) with the reward function;
        every response and its score go to ``eval_samples/step_NNNNNN.jsonl`` (read them: a rising
        reward can be the policy exploiting the reward model)."""
        if not len(self.eval_prompts):
            return {}
        w = self.workers
        started = time.perf_counter()
        everything = self.eval_prompts.batch(list(range(len(self.eval_prompts))), list(range(len(self.eval_prompts))))
        scores, kl, lengths, has_eos, samples = [], [], [], [], []
        self.sync_rollout_weights({})
        for prompts in everything.split(self.cfg.rows_per_step):
            batch, _ = w.policy.generate(prompts, seed=self.cfg.train.seed + 7, eval_mode=True)
            batch = batch.union(w.reward.compute_scores(batch))
            batch = batch.union(w.policy.compute_ref_logprobs(batch)).union(w.policy.compute_logprobs(batch))
            mask = batch["response_mask"]
            scores.append(batch["raw_scores"])
            kl.append(masked_sum(batch["old_logprobs"] - batch["ref_logprobs"], mask, dim=-1))  # k1, per response
            lengths.append(mask.sum(-1).float())
            has_eos.append(batch["has_eos"].float())
            samples += eval_samples(batch, kl[-1])
        write_jsonl(self.output_dir / EVAL_SAMPLES_DIR / f"step_{self.step:06d}.jsonl", samples)
        scores, kl, lengths, has_eos = (torch.cat(x) for x in (scores, kl, lengths, has_eos))
        metrics = {"reward_mean": float(scores.mean()), "reward_std": float(scores.std(correction=0)),
                   "kl": float(kl.mean()), "length_mean": float(lengths.mean()), "eos_rate": float(has_eos.mean()),
                   "prompts": float(len(scores)), "time_s": time.perf_counter() - started}
        self.logger.log(self.step, metrics, split="eval")
        shown = format_metrics(metrics, ["reward_mean", "reward_std", "kl", "length_mean"])
        self.console.print(f"[green]eval step {self.step}[/] {shown}")
        return metrics

    def report_alerts(self, metrics: dict[str, float]) -> list:
        alerts = self.alerts.check(self.step, metrics)
        for alert in alerts:
            self.console.print(f"[bold red]ALERT[/] step {alert.step} {alert.kind}: {alert.message}")
            self.logger.log(self.step, alert.as_dict(), split="alert")
        return alerts

    # ----- checkpoints ------------------------------------------------------------------------

    def metadata(self, **extra: Any) -> dict[str, Any]:
        return {"kind": "policy", "trainer": "ppo", "base_model": self.cfg.model.name, "step": self.step,
                "config": to_dict(self.cfg), **extra}

    def controller_state(self) -> dict[str, Any]:
        return {"step": self.step, "prompts_consumed": self.prompts_consumed, "rng": rng_state(),
                "kl_controller": self.kl_ctl.state_dict(), "alerts": self.alerts.state_dict(),
                "skipped_in_a_row": self.skipped_in_a_row}

    def save_checkpoint(self, keep: int = 2) -> Path:
        """``checkpoints/step-N/``: ``policy/`` (+ ``critic/``) Hugging Face folders with the workers'
        optimizer shards, each rank's RNG state, and ``trainer_state.pt``; written to a staging folder
        and renamed into place when complete, so a half-written one is never picked up. Workers
        refuse to save non-finite weights: the stop then names the last good checkpoint."""
        root = checkpoint_root(self.output_dir)
        final, staging = root / f"step-{self.step:06d}", root / f".step-{self.step:06d}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            self.workers.policy.save_checkpoint(str(staging), self.metadata())
            if self.workers.critic is not None:
                self.workers.critic.save_checkpoint(str(staging), {**self.metadata(), "kind": "critic"})
        except NonFiniteWeightsError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise TrainingError(f"step {self.step}: {err}; {self.last_good_checkpoint()}; "
                                f"{divergence_advice(self.cfg.model.dtype)}") from None
        fault_point(f"checkpoint:{self.step}")
        save_state(self.controller_state(), staging / STATE_FILE)
        return publish_checkpoint(staging, final, keep)

    def resume(self) -> bool:
        """Continue from the newest complete checkpoint: weights, optimizers, schedules, RNG,
        data position, KL coefficient and alert state."""
        ckpt = latest_checkpoint(self.output_dir)
        if ckpt is None:
            return False
        state = load_checkpoint_state(ckpt)
        self.workers.policy.load_checkpoint(str(ckpt))
        if self.workers.critic is not None:
            self.workers.critic.load_checkpoint(str(ckpt))
        self.step, self.prompts_consumed = int(state["step"]), int(state["prompts_consumed"])
        set_rng_state(state["rng"])
        self.kl_ctl.load_state_dict(state["kl_controller"])
        self.alerts.load_state_dict(state["alerts"])
        self.skipped_in_a_row = int(state.get("skipped_in_a_row", 0))
        self.rollout_stale = True
        self.console.print(f"[bold]resuming[/] from {ckpt} at step {self.step}/{self.cfg.train.steps}")
        return True


# ----------------------------------------------------------------------------- the job


def load_prompt_sets(cfg: RLConfig, tokenizer, console: Console) -> tuple[PromptSet, PromptSet]:
    """Training prompts and at most ``train.eval_prompts`` held-out prompts (never trained on)."""
    encoder = PromptResponseEncoder(tokenizer, ChatFormatter(tokenizer, template=cfg.model.chat_template),
                                    max_length=cfg.data.max_prompt_length + cfg.rollout.max_new_tokens,
                                    max_prompt_length=cfg.data.max_prompt_length)
    train, val = load_train_val(cfg.data, read_prompts, output_dir=Path(cfg.output_dir),
                                console=console)
    train_set, cut = encode_prompts(train, encoder)
    eval_set, _ = encode_prompts(val[: cfg.train.eval_prompts], encoder)
    if cut:
        console.print(f"[yellow]{cut} of {len(train_set)} prompts were cut from the left to "
                      f"data.max_prompt_length={cfg.data.max_prompt_length}[/]")
    if cfg.train.eval_prompts and not len(eval_set):
        console.print("[yellow]no held-out prompts: set data.validation or data.val_fraction > 0 to evaluate[/]")
    return train_set, eval_set


# Settings a resumed RL run may change: more steps, cadences, and where and on how many ranks it runs
# (checkpoints are read back at any world size).
RL_RESUMABLE = {**OFFLINE_RESUMABLE, "train.steps": only_upward, "train.max_skipped_updates": any_value,
                **{f"distributed.{key}": any_value for key in
                   ("backend", "world_size", "placement", "ray_address", "num_cpus_per_worker", "num_gpus_per_worker",
                    "max_restarts", "timeout_s", "offload")}}


def finished_run(cfg: RLConfig, ckpt: Path) -> RLResult | None:
    """The recorded result of a run that already reached ``train.steps``, else None."""
    summary = finished_summary(cfg.output_dir, int(load_checkpoint_state(ckpt)["step"]) >= cfg.train.steps)
    if summary is None:
        return None
    split = {p: {k[len(p) + 1:]: v for k, v in summary.items() if k.startswith(p + "_")} for p in ("train", "eval")}
    return RLResult(Path(cfg.output_dir) / "model", split["train"], split["eval"], [])


def build_workers(cfg: RLConfig, reward_fn=None) -> RLWorkers:
    """The worker groups of ``distributed.backend``: this process, or Ray actors over the ranks."""
    if cfg.distributed.backend == "ray":
        from alignflow.workers.ray_group import build_ray_workers

        return build_ray_workers(cfg, reward_fn=reward_fn)
    from alignflow.workers.local import build_local_workers

    return build_local_workers(cfg, reward_fn=reward_fn)


def train_rl(cfg: RLConfig, console: Console | None = None, *, reward_fn=None) -> RLResult:
    """The ``alignflow rl`` job: build the worker groups and prompts, then run the controller.

    A worker that dies stops the run naming its role, rank and the last good checkpoint; with
    ``distributed.max_restarts: N`` the groups are rebuilt and resume from that checkpoint, at most
    N times. ``reward_fn`` replaces the config's reward (tests, notebooks)."""
    from alignflow.workers.ray_group import WorkerFailure

    console = console or Console()
    if not cfg.resume:  # the RL outputs a fresh start removes besides the common ones
        shutil.rmtree(Path(cfg.output_dir) / EVAL_SAMPLES_DIR, ignore_errors=True)
        (Path(cfg.output_dir) / CURVES_FILE).unlink(missing_ok=True)
    ckpt = resume_or_start_afresh(cfg, cfg.output_dir, console, allowed=RL_RESUMABLE, model_folder="policy")
    if ckpt is not None and (done := finished_run(cfg, ckpt)) is not None:
        console.print(f"[bold green]RL already done[/]: {cfg.output_dir} holds the finished run; nothing to do")
        return done
    out = start_run(cfg, cfg.output_dir, seed=cfg.train.seed, threads=cfg.train.threads)
    train_prompts, eval_prompts = load_prompt_sets(cfg, load_tokenizer(cfg.model.name), console)
    restarts = 0
    while True:
        logger = MetricsLogger(out, console=console)
        workers = None
        try:
            workers = build_workers(cfg, reward_fn)
            if workers.critic is not None:
                console.print(f"critic: {workers.critic.describe()}")
            result = RLController(cfg, workers, train_prompts, eval_prompts, logger=logger, console=console).fit()
            break
        except WorkerFailure as failure:
            last = latest_checkpoint(out)
            resume_from = f"the last good checkpoint is {last}" if last else "no checkpoint was saved yet"
            if restarts >= cfg.distributed.max_restarts:
                raise TrainingError(f"{failure}; {resume_from}; rerun the same command to resume "
                                    "(distributed.max_restarts restarts automatically)") from None
            restarts += 1
            console.print(f"[bold red]{failure}[/]; restarting the worker groups ({restarts}/"
                          f"{cfg.distributed.max_restarts}) from {last or 'the start'}")
        finally:
            logger.close()
            if workers is not None:
                workers.shutdown()
    summary = {**{f"train_{k}": v for k, v in result.metrics.items()},
               **{f"eval_{k}": v for k, v in result.eval_metrics.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    console.print(f"[bold green]RL done[/] ({cfg.algorithm.adv_estimator}): policy in {result.model_dir}, "
                  f"curves in {out / CURVES_FILE}")
    return result

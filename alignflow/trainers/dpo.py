"""Offline DPO (Rafailov et al. 2023) and its IPO / cDPO variants on preference pairs.

The policy is trained straight from (prompt, chosen, rejected) pairs: no reward model, no
sampling. Per micro-batch, chosen and rejected run in one forward (see ``dpo_logps``), the
reference log-probs come from the cache (or the adapters-off LoRA model), and the loss is
``alignflow.algorithms.dpo_loss``. The shared loop brings resumption, checkpoints, NaN handling,
evaluation and logging; the best checkpoint by validation implicit-reward accuracy is kept in
``best/`` beside the final ``model/``. Before the first update policy and reference agree, so
every implicit reward is 0 (loss log 2 for DPO, accuracy 0.5): no step-0 evaluation is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from alignflow.algorithms.preference import dpo_loss, dpo_metrics
from alignflow.config.dpo import DPOConfig, DPOLossConfig
from alignflow.config.loader import to_dict
from alignflow.models import load_policy, read_metadata, save_model
from alignflow.models.forward import packing_capacity
from alignflow.models.shared_prefix import use_shared_prefix
from alignflow.runtime import distributed
from alignflow.runtime.launch import run_on_ranks
from alignflow.trainers.data_parallel import DataParallelModel
from alignflow.trainers.data_setup import load_preference_pairs, make_encoder
from alignflow.trainers.dpo_logps import (
    REFERENCE_FILE,
    AdapterReference,
    Reference,
    batched_pair_logps,
    cached_reference,
    pair_logps,
    reference_fingerprint,
)
from alignflow.trainers.loop import plan_steps, run_loop
from alignflow.trainers.pair_eval import accuracy_by_source, against_length_baseline, length_baseline
from alignflow.trainers.run_setup import finished_summary, resume_or_start_afresh, run_logger, start_run

# IPO regresses the per-token log-ratio gap to 1 / (2 beta) (Azar et al. 2023); the others use sums.
LENGTH_AVERAGED = frozenset({"ipo"})


@dataclass
class DPOResult:
    model_dir: Path
    best_dir: Path | None
    metrics: dict[str, float]


def dpo_objective(
    policy: torch.Tensor, reference: torch.Tensor, tokens: torch.Tensor, loss: DPOLossConfig
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """Loss, per-pair implicit rewards (chosen, rejected) and metrics from summed log-probs.

    Args: ``policy``, ``reference``: ``(pairs, 2)`` summed response log-probs (chosen, rejected);
    ``tokens``: ``(pairs, 2)`` response token counts, used by length-averaged losses.
    """
    if loss.type in LENGTH_AVERAGED:
        policy, reference = policy / tokens.clamp_min(1), reference / tokens.clamp_min(1)
    value, chosen, rejected = dpo_loss(policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1],
                                       beta=loss.beta, loss_type=loss.type, label_smoothing=loss.label_smoothing)
    policy = policy.detach()
    return value, (chosen, rejected), dpo_metrics(chosen, rejected, policy[:, 0], policy[:, 1])


def train_dpo(cfg: DPOConfig, console: Console | None = None) -> DPOResult:
    """DPO on ``cfg.distributed.world_size`` ranks (see ``runtime.launch``)."""
    return run_on_ranks(_train_dpo, cfg, console or Console())


def _train_dpo(cfg: DPOConfig, console: Console) -> DPOResult:
    resume_or_start_afresh(cfg, cfg.output_dir, console)
    out = start_run(cfg, cfg.output_dir, seed=cfg.train.seed, threads=cfg.train.threads)

    model, tokenizer = load_policy(cfg.model)
    encoder = make_encoder(tokenizer, cfg.model, cfg.data)
    pairs = load_preference_pairs(cfg.data, cfg.train, encoder, output_dir=out, console=console)
    train_examples, train_pairs, val_pairs, val_sources = (
        pairs.train_examples, pairs.train, pairs.validation, pairs.validation_sources)
    pad, dtype, micro = tokenizer.pad_token_id, cfg.model.dtype, cfg.train.micro_batch_size
    capacity = packing_capacity(model, cfg.model.name, cfg.data)  # None: right-padded rows
    # Each pair's prompt once, then chosen and rejected (models.shared_prefix); auto: where the model can.
    share = use_shared_prefix(model, cfg.model.name, "data.share_prompt", cfg.data.share_prompt)
    lengths = pairs.train_lengths
    splits = {"train": train_pairs, "validation": val_pairs}
    net = DataParallelModel(model)  # sharded by the loop, after the reference is computed

    reference: Reference
    if cfg.loss.reference == "lora":
        reference = AdapterReference(model, splits, batch_size=micro, pad_token_id=pad, dtype=dtype, capacity=capacity,
                                     share_prompt=share)
    else:
        # Only the pairs this run's step plan visits (the loop draws the same plan from the seed).
        visited = sorted({i for step in plan_steps(lengths, cfg.train) for mb in step for i in mb})
        reference = cached_reference(
            net.root, splits, {"train": visited, "validation": range(len(val_pairs))}, path=out / REFERENCE_FILE,
            fingerprint=reference_fingerprint(to_dict(cfg.model), splits), reuse=cfg.resume,
            batch_size=micro, pad_token_id=pad, dtype=dtype, console=console, capacity=capacity,
            share_prompt=share,
        )

    def loss_fn(indices: list[int], weight: float) -> tuple[torch.Tensor, dict[str, float]]:
        pairs = [train_pairs[i] for i in indices]
        ref = reference.logps("train", indices)
        policy, tokens = pair_logps(net.root, pairs, pad, dtype, capacity, share)
        loss, _, stats = dpo_objective(policy, ref, tokens, cfg.loss)
        return loss * weight, {"loss": loss.item(), **{k: float(v) for k, v in stats.items()},
                               "tokens": sum(len(c.input_ids) + len(r.input_ids) for c, r in pairs)}

    baseline = length_baseline(val_pairs, val_sources)

    def evaluate() -> dict[str, float]:
        policy, tokens = batched_pair_logps(net.root, val_pairs, batch_size=micro, pad_token_id=pad, dtype=dtype,
                                            capacity=capacity, share_prompt=share)
        ref = reference.logps("validation", range(len(val_pairs)))
        loss, (chosen, rejected), stats = dpo_objective(policy, ref, tokens, cfg.loss)
        return {"loss": float(loss), **{k: float(v) for k, v in stats.items()},
                **accuracy_by_source(val_sources, chosen, rejected), **baseline}

    def metadata() -> dict:
        return {"kind": "policy", "trainer": "dpo", "base_model": cfg.model.name, "config": to_dict(cfg)}

    # A resumed run competes with the best checkpoint it already kept.
    kept = read_metadata(out / "best") if cfg.resume else {}
    best = {"accuracy": kept.get("metrics", {}).get("accuracy", -1.0), "step": kept.get("step", -1)}

    def keep_best(step: int, metrics: dict[str, float]) -> None:
        if metrics["accuracy"] > best["accuracy"]:
            best.update(accuracy=metrics["accuracy"], step=step)
            net.write(lambda plain: save_model(plain, tokenizer, out / "best",
                                               {**metadata(), "metrics": metrics, "step": step}))

    logger = run_logger(out, console)
    result = run_loop(
        net=net, tokenizer=tokenizer, cfg=cfg.train, output_dir=out, lengths=lengths, loss_fn=loss_fn,
        unit_count=len, evaluate=evaluate if val_pairs else None, metadata=metadata,
        describe_rows=lambda idx: ", ".join(train_examples[i].source for i in idx),
        resume=cfg.resume, on_eval=keep_best if val_pairs else None, logger=logger, dtype=cfg.model.dtype,
    )
    if (done := finished_summary(out, result.already_done)) is not None:
        logger.close()
        console.print(f"[bold green]DPO already done[/]: {out} holds the finished run; nothing to do")
        return DPOResult(out / "model", out / "best" if (out / "best").is_dir() else None, done)
    metrics = {**result.summary(), "best_step": best["step"], "best_eval_accuracy": best["accuracy"],
               "train_pairs": len(train_pairs), "val_pairs": len(val_pairs)}
    model_dir = out / "model"
    net.write(lambda plain: save_model(plain, tokenizer, model_dir, {**metadata(), "metrics": metrics}))
    if distributed.rank() == 0:
        (out / "summary.json").write_text(json.dumps(metrics, indent=2))
    logger.close()
    best_dir = out / "best" if (out / "best").is_dir() else None
    if line := against_length_baseline(metrics):
        console.print(line)
    console.print(f"[bold green]DPO done[/]: policy in {model_dir} (best by validation accuracy: {best_dir})")
    return DPOResult(model_dir, best_dir, metrics)

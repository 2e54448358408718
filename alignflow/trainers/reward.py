"""Reward-model training on preference pairs (Bradley-Terry), as in Ouyang et al. 2022 / Huang et al. 2024.

Per pair, chosen and rejected run in one forward pass (stacked), sharing the prompt encoding.
Evaluation reports accuracy, mean margin and calibration error; the best checkpoint by
validation accuracy is kept beside the last one. After training the reward is shifted so that
its mean over validation responses is zero, which makes it a well-centred RL reward.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from alignflow.algorithms.preference import (
    bradley_terry_loss,
    calibration_error,
    preference_metrics,
    reward_centering_loss,
)
from alignflow.config.loader import to_dict
from alignflow.config.schema import RewardConfig
from alignflow.data.packing import pack_sequences
from alignflow.data.tokenize import Encoded, pad_right
from alignflow.models import load_reward_model, read_metadata, reward_head, value_head
from alignflow.models.forward import last_hidden_state, packing_capacity
from alignflow.models.reward_io import save_reward_model
from alignflow.models.shared_prefix import pack_shared_prefix, use_shared_prefix
from alignflow.runtime import autocast, distributed
from alignflow.runtime.launch import run_on_ranks
from alignflow.trainers.data_parallel import DataParallelModel
from alignflow.trainers.data_setup import load_preference_pairs, make_encoder
from alignflow.trainers.loop import run_loop
from alignflow.trainers.pair_eval import (
    accuracy_by_source,
    against_length_baseline,
    length_baseline,
    length_correlation,
    response_lengths,
)
from alignflow.trainers.run_setup import finished_summary, resume_or_start_afresh, run_logger, start_run


@dataclass
class RewardResult:
    model_dir: Path
    best_dir: Path | None
    metrics: dict[str, float]


def collate_pairs(pairs: list[tuple[Encoded, Encoded]], pad_token_id: int,
                  capacity: int | None = None, share_prompt: bool = False) -> dict:
    """Chosen sequences first, then rejected: right-padded rows ``(2 * pairs, length)``, or with a
    ``capacity`` packed rows (``alignflow.data.packing``) plus ``last_token``: each sequence's
    ``(row, index)`` of its final token, where a decoder reads the reward.

    ``share_prompt`` (``data.share_prompt``): ``shared_prefix``, a
    :class:`~alignflow.models.shared_prefix.SharedPrefixPack` of each pair's prompt once followed
    by chosen and rejected (pairs packed into rows of ``capacity`` tokens, one a row without one)."""
    if share_prompt:
        return {"shared_prefix": pack_shared_prefix([[c.input_ids, r.input_ids] for c, r in pairs], capacity or 0,
                                                    pad_token_id)}
    sequences = [c.input_ids for c, _ in pairs] + [r.input_ids for _, r in pairs]
    if capacity is None:
        return pad_right(sequences, pad_token_id)
    packed = pack_sequences(sequences, capacity, pad_token_id)
    lengths = torch.tensor([len(s) for s in sequences])
    last_token = packed["segments"] + torch.stack([torch.zeros_like(lengths), lengths - 1], dim=1)
    return {"input_ids": packed["input_ids"], "position_ids": packed["position_ids"], "last_token": last_token}


def pair_scores(model, batch: dict) -> torch.Tensor:
    """Rewards ``(2 * pairs,)`` fp32 of a ``collate_pairs`` batch, chosen first, then rejected (a tensor
    of its own, not a view: it is what the trainer's root forward returns)."""
    if "shared_prefix" in batch:  # the score head at each sequence's final token, pairs interleaved
        pack = batch["shared_prefix"].to(model.get_input_embeddings().weight.device)
        hidden = last_hidden_state(model, pack.input_ids, pack.attention_mask(model), pack.position_ids)
        scores = value_head(model)(hidden[pack.last_tokens()])[:, 0].view(-1, 2).T.reshape(-1)
    elif "last_token" in batch:  # packed: the score head at each sequence's final token, as HF pools it
        hidden = last_hidden_state(model, batch["input_ids"], None, batch["position_ids"])
        rows, index = batch["last_token"].unbind(1)
        scores = value_head(model)(hidden[rows, index])[:, 0]
    else:
        scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
    return scores.to(torch.float32, copy=True)


def split_pairs(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    half = scores.shape[0] // 2
    return scores[:half], scores[half:]


def pair_rewards(score: Callable[[dict], torch.Tensor], pairs: Sequence[tuple[Encoded, Encoded]], batch_size: int,
                 pad_token_id: int, dtype: str, capacity: int | None = None,
                 share_prompt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected rewards ``(pairs,)`` each, in order: ``batch_size`` pairs a
    :func:`collate_pairs` batch, each scored by ``score`` (:func:`pair_scores` over the model)
    under ``dtype``'s autocast."""
    chosen, rejected = [], []
    for start in range(0, len(pairs), batch_size):
        batch = collate_pairs(list(pairs[start : start + batch_size]), pad_token_id, capacity, share_prompt)
        with autocast(dtype):
            c, r = split_pairs(score(batch))
        chosen.append(c)
        rejected.append(r)
    if not chosen:
        return torch.zeros(0), torch.zeros(0)
    return torch.cat(chosen), torch.cat(rejected)


def train_reward_model(cfg: RewardConfig, console: Console | None = None) -> RewardResult:
    """Reward-model training on ``cfg.distributed.world_size`` ranks (see ``runtime.launch``)."""
    return run_on_ranks(_train_reward_model, cfg, console or Console())


def _train_reward_model(cfg: RewardConfig, console: Console) -> RewardResult:
    resume_or_start_afresh(cfg, cfg.output_dir, console)
    out = start_run(cfg, cfg.output_dir, seed=cfg.train.seed, threads=cfg.train.threads)

    model, tokenizer = load_reward_model(cfg.model)
    encoder = make_encoder(tokenizer, cfg.model, cfg.data)
    pairs = load_preference_pairs(cfg.data, cfg.train, encoder, output_dir=out, console=console)
    train_examples, train_pairs, val_pairs, val_sources = (
        pairs.train_examples, pairs.train, pairs.validation, pairs.validation_sources)
    pad = tokenizer.pad_token_id
    capacity = packing_capacity(model, cfg.model.name, cfg.data)  # None: right-padded rows (encoders always)
    # Each pair's prompt once, then chosen and rejected (decoders only; auto: where the model can).
    share = use_shared_prefix(model, cfg.model.name, "data.share_prompt", cfg.data.share_prompt)
    net = DataParallelModel(model)

    def loss_fn(indices: list[int], weight: float) -> tuple[torch.Tensor, dict[str, float]]:
        batch = collate_pairs([train_pairs[i] for i in indices], pad, capacity, share)
        with autocast(cfg.model.dtype):
            chosen, rejected = split_pairs(net(pair_scores, batch))
        loss = bradley_terry_loss(chosen, rejected, margin=cfg.loss.margin or None)
        if cfg.loss.center_coef:
            loss = loss + reward_centering_loss(chosen, rejected, cfg.loss.center_coef)
        stats = preference_metrics(chosen.detach(), rejected.detach())
        tokens = sum(len(c.input_ids) + len(r.input_ids) for c, r in (train_pairs[i] for i in indices))
        return loss * weight, {"loss": loss.item(), **{k: float(v) for k, v in stats.items()}, "tokens": tokens}

    baseline = length_baseline(val_pairs, val_sources)
    lengths = torch.cat(response_lengths(val_pairs))  # chosen then rejected, as ``both`` below

    def evaluate() -> dict[str, float]:
        chosen, rejected = pair_rewards(lambda batch: net(pair_scores, batch), val_pairs,
                                        cfg.train.micro_batch_size * 2, pad, cfg.model.dtype, capacity, share)
        stats = {k: float(v) for k, v in preference_metrics(chosen, rejected).items()}
        both = torch.cat([chosen, rejected])
        return {
            "loss": float(bradley_terry_loss(chosen, rejected)),
            **stats,
            "calibration_error": float(calibration_error(chosen, rejected)),
            "reward_mean": float(both.mean()),
            "reward_std": float(both.std()),
            **accuracy_by_source(val_sources, chosen, rejected),
            "length_correlation": length_correlation(both, lengths),
            **baseline,
        }

    def metadata() -> dict:
        return {"kind": "reward_model", "trainer": "reward", "base_model": cfg.model.name, "config": to_dict(cfg)}

    # A resumed run competes with the best checkpoint it already kept.
    kept = read_metadata(out / "best") if cfg.resume else {}
    best = {"accuracy": kept.get("metrics", {}).get("accuracy", -1.0), "step": kept.get("step", -1)}

    def keep_best(step: int, metrics: dict[str, float]) -> None:
        if metrics["accuracy"] > best["accuracy"]:
            best.update(accuracy=metrics["accuracy"], step=step)
            net.write(lambda plain: save_reward_model(plain, tokenizer, out / "best",
                                                      {**metadata(), "metrics": metrics, "step": step},
                                                      offset=-metrics["reward_mean"]))

    logger = run_logger(out, console)
    result = run_loop(
        net=net, tokenizer=tokenizer, cfg=cfg.train, output_dir=out,
        lengths=pairs.train_lengths, loss_fn=loss_fn,
        unit_count=len, evaluate=evaluate if val_pairs else None, metadata=metadata,
        describe_rows=lambda idx: ", ".join(train_examples[i].source for i in idx),
        resume=cfg.resume, on_eval=keep_best if val_pairs else None, logger=logger, head=reward_head(model),
        head_lr=cfg.train.head_lr, dtype=cfg.model.dtype,
    )
    if (done := finished_summary(out, result.already_done)) is not None:
        logger.close()
        console.print(f"[bold green]reward model already done[/]: {out} holds the finished run; nothing to do")
        return RewardResult(out / "model", out / "best" if (out / "best").is_dir() else None, done)
    metrics = {**result.summary(), "best_step": best["step"], "best_eval_accuracy": best["accuracy"],
               "train_pairs": len(train_pairs), "val_pairs": len(val_pairs)}
    offset = -result.eval_metrics.get("reward_mean", 0.0)
    model_dir = out / "model"
    net.write(lambda plain: save_reward_model(plain, tokenizer, model_dir, {**metadata(), "metrics": metrics},
                                              offset=offset))
    if distributed.rank() == 0:
        (out / "summary.json").write_text(json.dumps(metrics, indent=2))
    logger.close()
    best_dir = out / "best" if (out / "best").is_dir() else None
    if line := against_length_baseline(metrics):
        console.print(line)
    console.print(f"[bold green]reward model done[/]: {model_dir} (best by validation accuracy: {best_dir})")
    return RewardResult(model_dir, best_dir, metrics)


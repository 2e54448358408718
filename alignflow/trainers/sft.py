"""Supervised fine-tuning: next-token loss on response tokens only (prompt and padding masked).

Each target ends with EOS so the model learns to stop (Huang et al. 2024, detail 2). The loss is
the sum over response tokens divided by the response tokens of the whole optimizer step, so that
gradient accumulation gives exactly the gradient of one big batch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from alignflow.config.loader import to_dict
from alignflow.config.schema import SFTConfig
from alignflow.data.packing import pack_sequences
from alignflow.data.readers import read_sft
from alignflow.data.tokenize import IGNORE_INDEX, Encoded, PromptResponseEncoder, pad_right, truncation_summary
from alignflow.data.types import RowIssue, SFTExample
from alignflow.models import load_policy, save_model
from alignflow.models.forward import labelled_token_nll, packing_capacity
from alignflow.runtime import autocast, distributed
from alignflow.runtime.launch import run_on_ranks
from alignflow.trainers.data_parallel import DataParallelModel
from alignflow.trainers.data_setup import load_train_val, make_encoder, report_issues
from alignflow.trainers.loop import run_loop
from alignflow.trainers.run_setup import finished_summary, resume_or_start_afresh, run_logger, start_run


@dataclass
class SFTResult:
    model_dir: Path
    metrics: dict[str, float]


def collate_sft(rows: list[Encoded], pad_token_id: int) -> dict[str, torch.Tensor | None]:
    """Right-padded (batch, length) ids, attention mask and labels (response tokens only)."""
    batch = pad_right([r.input_ids for r in rows], pad_token_id)
    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    for i, row in enumerate(rows):
        labels[i, len(row.prompt_ids) : len(row.input_ids)] = torch.tensor(row.response_ids)
    return {**batch, "position_ids": None, "sequence_ids": None, "labels": labels}


def collate_sft_packed(rows: list[Encoded], pad_token_id: int, capacity: int) -> dict[str, torch.Tensor | None]:
    """``rows`` packed into rows of at most ``capacity`` tokens: ids, position ids, sequence ids
    (the index in ``rows``), labels, no mask."""
    packed = pack_sequences([r.input_ids for r in rows], capacity, pad_token_id)
    labels = torch.full_like(packed["input_ids"], IGNORE_INDEX)
    for row, (at, start) in zip(rows, packed["segments"].tolist()):
        # A sequence's first token would be "predicted" by the previous sequence's last one: never a label.
        first = start + max(len(row.prompt_ids), 1)
        labels[at, first : start + len(row.input_ids)] = torch.tensor(row.input_ids[first - start :])
    return {"input_ids": packed["input_ids"], "attention_mask": None, "position_ids": packed["position_ids"],
            "sequence_ids": packed["sequence_ids"], "labels": labels}


def encode_examples(
    examples: list[SFTExample], encoder: PromptResponseEncoder
) -> tuple[list[Encoded], list[SFTExample], list[RowIssue]]:
    """Encode every example; a row whose response is cut away entirely is reported, not trained on."""
    kept, kept_examples, issues = [], [], []
    for example in examples:
        encoded = encoder.encode(example.prompt, example.response)
        if encoded.truncated_prompt and len(encoded.prompt_ids) >= encoder.max_length:
            issues.append(RowIssue(example.source, "prompt does not fit data.max_length"))
            continue
        kept.append(encoded)
        kept_examples.append(example)
    return kept, kept_examples, issues


def train_sft(cfg: SFTConfig, console: Console | None = None) -> SFTResult:
    """SFT on ``cfg.distributed.world_size`` ranks (see ``runtime.launch``)."""
    return run_on_ranks(_train_sft, cfg, console or Console())


def _train_sft(cfg: SFTConfig, console: Console) -> SFTResult:
    resume_or_start_afresh(cfg, cfg.output_dir, console)
    out = start_run(cfg, cfg.output_dir, seed=cfg.train.seed, threads=cfg.train.threads)

    model, tokenizer = load_policy(cfg.model)
    encoder = make_encoder(tokenizer, cfg.model, cfg.data)
    train_examples, val_examples = load_train_val(cfg.data, read_sft, output_dir=out,
                                                  console=console)
    train_rows, train_examples, issues = encode_examples(train_examples, encoder)
    val_rows, _, val_issues = encode_examples(val_examples, encoder)
    report_issues(issues + val_issues, out, console, what="rows that do not fit")
    if cfg.train.eval_max_samples:
        val_rows = val_rows[: cfg.train.eval_max_samples]
    if cut := truncation_summary(train_rows, "training rows"):
        console.print(f"[yellow]{cut}[/]")

    capacity = packing_capacity(model, cfg.model.name, cfg.data)  # None: right-padded rows
    pad = tokenizer.pad_token_id
    net = DataParallelModel(model)

    def micro_nll(rows: list[Encoded]) -> tuple[torch.Tensor, int]:
        batch = collate_sft(rows, pad) if capacity is None else collate_sft_packed(rows, pad, capacity)
        with autocast(cfg.model.dtype):
            return net(labelled_token_nll, batch["input_ids"], batch["attention_mask"], batch["labels"],
                       position_ids=batch["position_ids"])

    def loss_fn(indices: list[int], weight: float) -> tuple[torch.Tensor, dict[str, float]]:
        rows = [train_rows[i] for i in indices]
        nll, n_tokens = micro_nll(rows)
        loss = nll / max(n_tokens, 1)
        return loss * weight, {"loss": loss.item(), "tokens": sum(len(r.input_ids) for r in rows)}

    def evaluate() -> dict[str, float]:
        total, tokens = 0.0, 0
        for start in range(0, len(val_rows), cfg.train.micro_batch_size):
            nll, n = micro_nll(val_rows[start : start + cfg.train.micro_batch_size])
            total, tokens = total + float(nll), tokens + n
        loss = total / max(tokens, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens}

    def metadata() -> dict:
        return {"kind": "policy", "trainer": "sft", "base_model": cfg.model.name, "config": to_dict(cfg)}

    def response_tokens(indices: list[int]) -> int:
        return sum(len(train_rows[i].response_ids) for i in indices)

    logger = run_logger(out, console)
    result = run_loop(
        net=net, tokenizer=tokenizer, cfg=cfg.train, output_dir=out,
        lengths=[len(r.input_ids) for r in train_rows], loss_fn=loss_fn, unit_count=response_tokens,
        evaluate=evaluate if val_rows else None, metadata=metadata,
        describe_rows=lambda idx: ", ".join(train_examples[i].source for i in idx),
        resume=cfg.resume, logger=logger, dtype=cfg.model.dtype, eval_at_start=True,
    )
    if (done := finished_summary(out, result.already_done)) is not None:
        logger.close()
        console.print(f"[bold green]SFT already done[/]: {out} holds the finished run; nothing to do")
        return SFTResult(out / "model", done)
    metrics = {**result.summary(), **{"initial_eval_" + k: v for k, v in result.initial_eval.items()}}
    model_dir = out / "model"
    net.write(lambda plain: save_model(plain, tokenizer, model_dir, {**metadata(), "metrics": metrics}))
    if distributed.rank() == 0:
        (out / "summary.json").write_text(json.dumps(metrics, indent=2))
    logger.close()
    console.print(f"[bold green]SFT done[/]: model in {model_dir}")
    return SFTResult(model_dir, metrics)

"""The ``classifier`` stage: fine-tune an encoder as a two-label sequence classifier on ``{text, label}`` rows.

Cross-entropy on batches padded to their longest text, AdamW with linear warm-up and decay; a
line every ``log_every`` steps (loss, accuracy, texts/s, ETA) whether or not the output is a
terminal. The result is a plain Hugging Face folder (``model/``, with ``id2label`` set to the data's
label names) that a ``kind: classifier`` reward or judge loads, with the held-out accuracies in
``alignflow.json``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from rich.console import Console
from transformers import AutoModelForSequenceClassification

from alignflow.config.classify import ClassifierConfig
from alignflow.config.loader import to_dict
from alignflow.models import resolve_model
from alignflow.models.loading import load_tokenizer, materialize
from alignflow.models.saving import save_model
from alignflow.runtime import autocast
from alignflow.trainers.labelled import held_out_accuracies, load_split
from alignflow.trainers.run_setup import start_run


def linear_schedule(step: int, total: int, warmup: int) -> float:
    """The learning-rate factor: 0 -> 1 over ``warmup`` steps, then 1 -> 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def cut(ids: list[int], max_length: int, truncation: str) -> list[int]:
    """``ids`` cut to ``max_length``: the start (``head``), or the first quarter and the end (``head_tail``).
    The end keeps the tokenizer's closing token ([SEP]) as the head keeps the opening one ([CLS])."""
    if len(ids) <= max_length:
        return ids
    if truncation == "head":
        return ids[: max_length - 1] + ids[-1:]
    head = max_length // 4
    return ids[:head] + ids[len(ids) - (max_length - head):]


def freeze_lower_layers(model, count: int) -> None:
    """No gradient for the embeddings and the first ``count`` encoder layers (BERT-style encoders)."""
    if count == 0:
        return
    base = model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None or not hasattr(base, "embeddings"):
        raise ValueError(f"freeze_layers needs a BERT-style encoder (embeddings, encoder.layer); "
                         f"{type(model).__name__} is not one")
    if count > len(layers):
        raise ValueError(f"freeze_layers={count} but the encoder has {len(layers)} layers")
    for module in (base.embeddings, *layers[:count]):
        module.requires_grad_(False)


def encode(tokenizer, texts: list[str], max_length: int, truncation: str) -> list[list[int]]:
    return [cut(ids, max_length, truncation) for ids in tokenizer(texts)["input_ids"]]


def train_classifier(cfg: ClassifierConfig, console: Console | None = None) -> tuple[Path, dict]:
    """Train, measure on the held-out rows and save; returns the model folder and the metrics."""
    console = console or Console()
    cfg.validate()
    out = start_run(cfg, cfg.output_dir, seed=cfg.seed, threads=cfg.threads)
    started = time.perf_counter()
    train = load_split(cfg.data.train, cfg.data, max_samples=cfg.data.max_samples, key="data.train")
    labels = cfg.data.labels
    tokenizer = load_tokenizer(cfg.model)
    model = AutoModelForSequenceClassification.from_pretrained(
        materialize(resolve_model(cfg.model)).path, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    freeze_lower_layers(model, cfg.freeze_layers)
    encoded = encode(tokenizer, [r.text for r in train], cfg.max_length, cfg.truncation)
    targets = [r.label for r in train]

    steps_per_epoch = -(-len(train) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = int(total * cfg.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: linear_schedule(step, total, warmup))
    console.print(f"classifier: {cfg.model} on {len(train)} texts ({cfg.max_length} tokens), {total} steps")
    rng = random.Random(cfg.seed)
    model.train()
    step, window_loss, window_correct, window_seen, clock = 0, 0.0, 0, 0, time.perf_counter()
    for _ in range(cfg.epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start : start + cfg.batch_size]
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt")
            target = torch.tensor([targets[i] for i in rows])
            with autocast(cfg.dtype):
                logits = model(**batch).logits.float()
            loss = torch.nn.functional.cross_entropy(logits, target)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_loss += loss.item() * len(rows)
            window_correct += int((logits.argmax(-1) == target).sum())
            window_seen += len(rows)
            if step % cfg.log_every == 0 or step == total:
                elapsed = time.perf_counter() - clock
                eta = elapsed / step * (total - step)
                console.print(f"classifier step {step}/{total}: loss {window_loss / window_seen:.4f}, "
                              f"accuracy {window_correct / window_seen:.1%}, "
                              f"{step * cfg.batch_size / elapsed:.1f} texts/s, ETA {eta:.0f} s")
                window_loss, window_correct, window_seen = 0.0, 0, 0
    model.eval()
    metrics: dict = {"train_rows": len(train), "steps": step, "train_seconds": round(time.perf_counter() - clock, 1)}
    if cfg.data.test:
        test = load_split(cfg.data.test, cfg.data, max_samples=None, sample=cfg.data.test_samples, key="data.test")
        metrics.update(held_out_accuracies(lambda texts: predict(model, tokenizer, texts, cfg), test,
                                           cfg.data.probe_words))
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    model_dir = save_model(model, tokenizer, out / "model", {"kind": "classifier", "labels": labels,
                                                            "config": to_dict(cfg), "metrics": metrics})
    console.print("classifier: " + ", ".join(f"{k} {_show(v)}" for k, v in metrics.items()))
    return model_dir, metrics


@torch.no_grad()
def predict(model, tokenizer, texts: list[str], cfg: ClassifierConfig, batch_size: int = 32) -> list[int]:
    """The predicted label index of each text, batched by length (less padding)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    predicted = [0] * len(texts)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids = encode(tokenizer, [texts[i] for i in rows], cfg.test_max_length, cfg.truncation)
        batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        with autocast(cfg.dtype):
            labels = model(**batch).logits.argmax(-1).tolist()
        for i, label in zip(rows, labels):
            predicted[i] = label
    return predicted


def _show(value) -> str:
    if isinstance(value, dict):
        return f"{value['value']:.1%} [{value['low']:.1%}, {value['high']:.1%}] (n={value['n']})"
    return str(value)

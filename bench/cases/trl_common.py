"""What the TRL case scripts share (runs in bench/.venv-trl): tokenizer, models, TrainingArguments."""

from __future__ import annotations

import argparse

import torch
from benchlib import METER
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer


def load_tokenizer(path: str):
    """The model's tokenizer with a pad token distinct from EOS, chosen as alignflow chooses it
    (SmolLM2 ships pad = EOS = ``<|im_end|>``; both then pad with ``<|endoftext|>``)."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token is None or tokenizer.unk_token_id == tokenizer.eos_token_id:
            raise SystemExit("no pad token distinct from EOS")
        tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


def _prepare(model, tokenizer):
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def load_causal_lm(path: str, tokenizer):
    """fp32 weights, as alignflow loads them (bf16 variants use autocast over fp32 master weights)."""
    return _prepare(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tokenizer)


def load_reward_model(path: str, tokenizer):
    return _prepare(AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32),
                    tokenizer)


def training_kwargs(args: argparse.Namespace, *, batch: int) -> dict:
    """The TrainingArguments every TRL case uses: ``batch`` rows per optimizer step, no accumulation,
    constant LR, no logging / evaluation / saving / reporting, CPU, no dataloader workers.

    Variant ``default`` leaves precision and gradient checkpointing to TRL (its defaults: bf16 on,
    gradient checkpointing on); ``fp32`` turns both off; ``padding_free`` (SFT) is ``default`` plus
    TRL's ``padding_free=True``, set by the case.
    """
    kwargs = dict(
        output_dir=args.workdir, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        max_steps=args.warmup + args.steps, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
        logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        use_cpu=True, dataloader_num_workers=0, dataloader_pin_memory=False, seed=args.seed, data_seed=args.seed,
        log_level="warning", push_to_hub=False,
    )
    if args.variant == "fp32":
        kwargs.update(bf16=False, gradient_checkpointing=False)
    elif args.variant not in ("default", "padding_free"):
        raise SystemExit(f"unknown TRL variant {args.variant!r} (default | fp32 | padding_free)")
    return kwargs


def settings(trainer) -> dict:
    import transformers
    import trl

    a = trainer.args
    return {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
            "bf16": bool(a.bf16), "gradient_checkpointing": bool(a.gradient_checkpointing), "optim": str(a.optim),
            "batch": a.per_device_train_batch_size, "lr": a.learning_rate, "threads": torch.get_num_threads()}


def start(model_path: str) -> None:
    METER.install_token_counter(model_path)
    METER.install_optimizer_clock()

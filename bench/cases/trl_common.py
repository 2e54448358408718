"""What the TRL case scripts share (runs in bench/.venv-trl): tokenizer, models, TrainingArguments."""

from __future__ import annotations

import argparse
import os

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


def load_causal_lm(path: str, tokenizer, dtype: torch.dtype = torch.float32):
    """fp32 weights, as alignflow loads them for training (bf16 variants use autocast over fp32 master
    weights); ``dtype=torch.bfloat16`` for HF generate's ``bf16`` variant."""
    return _prepare(AutoModelForCausalLM.from_pretrained(path, dtype=dtype), tokenizer)


def load_reward_model(path: str, tokenizer):
    return _prepare(AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32),
                    tokenizer)


VARIANTS = ("default", "bf16", "compile", "fp32", "padding_free")


def training_kwargs(args: argparse.Namespace, *, batch: int) -> dict:
    """The TrainingArguments every TRL case uses: ``batch`` rows per optimizer step, no accumulation,
    constant LR, no logging / evaluation / saving / reporting, CPU, no dataloader workers, and the
    rows in file order (``train_sampling_strategy="sequential"``; GRPO / RLOO also set
    ``shuffle_dataset=False``): the data files already hold the shared shuffle, which alignflow
    takes in the same order.

    Variants: ``default`` leaves precision and gradient checkpointing to TRL (its defaults: bf16
    on, gradient checkpointing on); ``bf16`` is bf16 without gradient checkpointing (alignflow's
    default precision); ``fp32`` turns bf16 and checkpointing off; ``compile`` is
    ``torch_compile=True`` (inductor, via accelerate's dynamo plugin) without checkpointing at the
    CPU's native precision: bf16 where it runs bf16 natively, else fp32 (:func:`native_bf16`, the
    rule alignflow applies to its own bf16); ``padding_free`` (SFT) is TRL's ``padding_free=True``
    (set by the case) at that same precision, without checkpointing.
    """
    kwargs = dict(
        output_dir=args.workdir, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        max_steps=args.warmup + args.steps, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
        logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        use_cpu=True, dataloader_num_workers=0, dataloader_pin_memory=False, seed=args.seed, data_seed=args.seed,
        log_level="warning", push_to_hub=False, train_sampling_strategy="sequential",
    )
    if args.variant not in VARIANTS:
        raise SystemExit(f"unknown TRL variant {args.variant!r} ({' | '.join(VARIANTS)})")
    if args.variant == "bf16":
        kwargs.update(bf16=True, gradient_checkpointing=False)
    if args.variant in ("compile", "padding_free"):
        kwargs.update(bf16=native_bf16(), gradient_checkpointing=False)
    if args.variant == "compile":
        kwargs.update(torch_compile=True)
    if args.variant == "fp32":
        kwargs.update(bf16=False, gradient_checkpointing=False)
    return kwargs


def native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX): the same test as alignflow's
    ``alignflow.runtime.native_bf16``, which runs alignflow's bf16 as fp32 where it fails
    (``ALIGNFLOW_CPU_BF16=1`` forces bf16 in both)."""
    if os.environ.get("ALIGNFLOW_CPU_BF16") == "1":
        return True
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def check_file_order(trainer) -> None:
    """Refuse to run unless the trainer takes the rows in file order (the shared shuffle)."""
    from torch.utils.data import SequentialSampler

    if hasattr(trainer, "shuffle_dataset"):  # GRPO / RLOO: RepeatSampler(shuffle=...)
        if trainer.shuffle_dataset:
            raise SystemExit("the RL trainer shuffles its prompts; expected shuffle_dataset=False")
        return
    sampler = trainer._get_train_sampler(trainer.train_dataset)
    if not isinstance(sampler, SequentialSampler):
        raise SystemExit(f"the trainer samples with {type(sampler).__name__}, expected a SequentialSampler")


def settings(trainer) -> dict:
    import transformers
    import trl

    a = trainer.args
    return {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
            "bf16": bool(a.bf16), "gradient_checkpointing": bool(a.gradient_checkpointing), "optim": str(a.optim),
            "torch_compile": bool(a.torch_compile), "data_order": "file",
            "batch": a.per_device_train_batch_size, "lr": a.learning_rate, "threads": torch.get_num_threads()}


def start(model_path: str) -> None:
    METER.install_token_counter(model_path)
    install_fused_head_counter()


def install_fused_head_counter() -> None:
    """Count the rows of TRL's fused LM head (``model(..., fused_lm_head=True)``: SFT, DPO, GRPO, RLOO),
    which projects through the head's weight in tiles (``_ChunkedLogProbFunction``) instead of calling
    the head module, so the ``nn.Linear`` counter does not see it."""
    from trl.trainer import utils as trl_utils

    function = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if function is None or getattr(function.apply, "_bench_wrapped", False):
        return
    original = function.apply
    count = torch.compiler.disable(METER._count_flat_head)

    def apply(hidden, *args):
        count(hidden)
        return original(hidden, *args)

    apply._bench_wrapped = True  # type: ignore[attr-defined]
    function.apply = staticmethod(apply)
    METER.install_optimizer_clock()

"""Load tokenizers, policies and reward models from any `ModelSource`, set up for alignment.

Every loader applies the same fixes that RLHF needs (Huang et al. 2024):
- a pad token distinct from EOS, so masking padding never masks the EOS the model must learn;
- dropout off, so log-probs and rewards are deterministic functions of the weights;
- ``config.pad_token_id`` set, so sequence-classification heads read the last real token.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from alignflow.config.schema import LoraConfig, ModelConfig
from alignflow.models.registry import ModelNotFoundError, ModelSource, cache_dir, resolve_model

PAD_TOKEN = "<|pad|>"


def materialize(source: ModelSource) -> ModelSource:
    """A GGUF source becomes a cached Hugging Face folder (converted once); others pass through."""
    if source.gguf_file is None:
        return source
    stem = source.alias or Path(source.gguf_file).stem
    target = cache_dir() / "models" / stem
    if not (target / "config.json").is_file():
        convert_gguf(source, target)
    return ModelSource(str(target), alias=source.alias)


def convert_gguf(source: ModelSource, target: Path) -> None:
    """Dequantise a GGUF checkpoint into a standard safetensors folder.

    The model transformers builds from GGUF keeps a quantization config and cannot be
    ``save_pretrained`` as is, so we rebuild it from a clean config and copy the weights.
    """
    tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = type(loaded.config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary folder and rename, so a concurrent or interrupted run never sees half a model.
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)


def load_tokenizer(name_or_source: str | ModelSource) -> PreTrainedTokenizerBase:
    source = materialize(resolve_model(name_or_source) if isinstance(name_or_source, str) else name_or_source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path)
    except OSError as err:
        raise ModelNotFoundError(f"could not load a tokenizer from {source.path!r}: {err}") from err
    ensure_pad_token(tokenizer)
    return tokenizer


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Give the tokenizer a pad token distinct from EOS; True when a new token was added.

    Reuses an existing special token that is not EOS (e.g. SmolLM2's ``<|endoftext|>``) so the
    embedding matrix keeps its size; only tokenizers with nothing suitable (GPT-2) get a new one.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return False
    if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
        tokenizer.pad_token = tokenizer.unk_token
        return False
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return True


# Modules that copy the config's rate into a float attribute at construction (Llama attention
# keeps ``self.attention_dropout``) need that attribute zeroed too, not only nn.Dropout modules.
_DROPOUT_RATE_ATTRS = ("attention_dropout", "attn_dropout", "dropout", "dropout_p", "dropout_rate")


def disable_dropout(model: nn.Module) -> None:
    """Dropout off everywhere (Huang et al. 2024, detail 10): log-probs, values and rewards must be
    deterministic functions of the weights, else PPO ratios and KL estimates are noise."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name in _DROPOUT_RATE_ATTRS:
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    for key in ("attention_dropout", "hidden_dropout", "hidden_dropout_prob", "attention_probs_dropout_prob",
                "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout", "classifier_dropout"):
        if getattr(model.config, key, None):
            setattr(model.config, key, 0.0)


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (Llama ``layers``, BERT ``layer``, GPT-2 ``h``): the ModuleList
    whose length is the config's ``num_hidden_layers``."""
    count = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(f"cannot find the {count} transformer blocks of {type(model).__name__}")


def compile_blocks(model: nn.Module) -> None:
    """``torch.compile`` every transformer block in place (inductor, dynamic shapes).

    The blocks share their code, so one compiled graph serves them all, and ``Module.compile``
    keeps parameter names, so checkpoints load as before. Compile only after any deep copy of the
    model is taken: a copy's blocks would still call the original blocks' compiled forward.
    """
    for block in transformer_blocks(model):
        block.compile(dynamic=True)


def keep_first_layers(model: PreTrainedModel, num_layers: int) -> None:
    """Drop every block above ``num_layers``; the saved config says so, so plain HF loads the result."""
    blocks = transformer_blocks(model)
    if num_layers > len(blocks):
        raise ValueError(f"model.num_layers={num_layers} but the model has only {len(blocks)} layers")
    del blocks[num_layers:]
    model.config.num_hidden_layers = num_layers
    if isinstance(getattr(model.config, "layer_types", None), list):  # per-layer attention kinds (Llama, ...)
        model.config.layer_types = model.config.layer_types[:num_layers]


def freeze_lower_layers(model: PreTrainedModel, count: int) -> None:
    """No gradients for the embeddings and the first ``count`` blocks (autograd then stops there).

    A policy whose output head is tied to its input embeddings (SmolLM2, GPT-2) keeps that head
    frozen too: only the blocks above ``count`` and the final norm train, a cheap partial fine-tune
    that suits DPO and SFT on a CPU."""
    blocks = transformer_blocks(model)
    if count > len(blocks):
        raise ValueError(f"model.freeze_layers={count} but the model has only {len(blocks)} layers")
    # BERT-style models keep position embeddings and a LayerNorm beside the token embeddings.
    embeddings = [m for name, m in model.named_modules() if name.endswith("embeddings")]
    for module in [model.get_input_embeddings(), *embeddings, *blocks[:count]]:
        for param in module.parameters():
            param.requires_grad_(False)


def _prepare(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cfg: ModelConfig) -> PreTrainedModel:
    if cfg.num_layers is not None:
        keep_first_layers(model, cfg.num_layers)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    if cfg.freeze_layers:  # after the resize, which replaces the embedding parameters
        freeze_lower_layers(model, cfg.freeze_layers)
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if cfg.disable_dropout:
        disable_dropout(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model


def load_policy(
    cfg: ModelConfig, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer, ready for SFT or RL (LoRA applied when configured)."""
    source = materialize(resolve_model(cfg.name))
    tokenizer = load_tokenizer(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype)
    except OSError as err:
        raise ModelNotFoundError(f"could not load model {cfg.name!r} from {source.path!r}: {err}") from err
    model = _prepare(model, tokenizer, cfg)
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora, task_type="CAUSAL_LM")
    return model, tokenizer


def load_reward_model(
    cfg: ModelConfig, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence-classification model with one output (the scalar reward) and its tokenizer.

    Decoder backbones read the reward at the last real token (transformers finds it through
    ``pad_token_id``); encoder backbones pool (BERT: the [CLS] pooler). A fresh scalar head gets
    std 1/sqrt(d+1) and bias 0 (Huang et al. 2024, detail 6); a reward-model folder keeps its own
    head, so training can continue from a trained reward model.
    """
    source = materialize(resolve_model(cfg.name))
    tokenizer = load_tokenizer(source)
    try:
        config = AutoConfig.from_pretrained(source.path, num_labels=1)
        has_head = any(arch.endswith("ForSequenceClassification") for arch in config.architectures or [])
        model = AutoModelForSequenceClassification.from_pretrained(source.path, config=config, dtype=dtype)
    except OSError as err:
        raise ModelNotFoundError(f"could not load reward model {cfg.name!r} from {source.path!r}: {err}") from err
    model = _prepare(model, tokenizer, cfg)
    if not has_head:
        head = reward_head(model)
        hidden = head.in_features
        nn.init.normal_(head.weight, std=1.0 / (hidden + 1) ** 0.5)
        if head.bias is not None:
            nn.init.zeros_(head.bias)
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora, task_type="SEQ_CLS")
    return model, tokenizer


def reward_head(model: nn.Module) -> nn.Linear:
    """The final scalar projection of a sequence-classification model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name in ("score", "classifier", "out_proj"):
        head = getattr(base, name, None)
        if isinstance(head, nn.Linear):
            return head
        if head is not None and isinstance(getattr(head, "out_proj", None), nn.Linear):
            return head.out_proj
    raise TypeError(f"cannot find the scalar head of {type(base).__name__}")


def value_head(model: nn.Module) -> nn.Module:
    """The scalar head to call on hidden states: a decoder's ``score`` (under LoRA, peft's wrapper
    around it, which holds the trained copy), else :func:`reward_head`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = getattr(base, "score", None)
    return head if head is not None else reward_head(model)


def is_causal_decoder(config) -> bool:
    """Whether a config's architecture reads left to right (Llama, GPT-2), not an encoder (BERT)."""
    kind = config.model_type
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def apply_lora(model: PreTrainedModel, cfg: LoraConfig, *, task_type: str) -> PreTrainedModel:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in cfg.target_modules if t in present]
    if not targets:
        raise ValueError(
            f"model.lora.target_modules {cfg.target_modules} match no module of {type(model).__name__}; "
            f"linear layers here include: {sorted(n for n in present if 'proj' in n or 'dense' in n)[:12]}"
        )
    peft_config = PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, task_type=task_type
    )
    return get_peft_model(model, peft_config)

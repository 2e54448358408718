"""Model loading (aliases, GGUF, local folders, hub ids), LoRA, and saving as Hugging Face folders."""

from alignflow.models.loading import (
    apply_lora,
    compile_blocks,
    disable_dropout,
    ensure_pad_token,
    is_causal_decoder,
    load_policy,
    load_reward_model,
    load_tokenizer,
    materialize,
    reward_head,
    value_head,
)
from alignflow.models.registry import EMBEDDED_MODELS, ModelNotFoundError, ModelSource, resolve_model
from alignflow.models.saving import read_metadata, save_model, write_metadata

__all__ = [
    "EMBEDDED_MODELS", "ModelNotFoundError", "ModelSource", "apply_lora", "compile_blocks", "disable_dropout",
    "ensure_pad_token", "is_causal_decoder", "load_policy", "load_reward_model", "load_tokenizer", "materialize",
    "read_metadata", "resolve_model", "reward_head", "save_model", "value_head", "write_metadata",
]

"""Saving reward models with their centring offset, and scoring (prompt, response) rows with them.

The offset makes the mean reward over validation responses zero (Huang et al. 2024, detail 8).
Heads with a bias (BERT's classifier) absorb it, so plain transformers gives centred rewards;
heads without one (Llama's ``score``) keep it in ``config.alignflow_reward_offset``, which
`RewardModelScorer` adds. Either way the offset is also recorded in ``alignflow.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from alignflow.config.schema import ModelConfig
from alignflow.data.formatting import ChatFormatter
from alignflow.data.tokenize import PromptResponseEncoder, pad_right
from alignflow.data.types import Message
from alignflow.models.loading import disable_dropout, load_tokenizer, reward_head
from alignflow.models.registry import check_model_folder
from alignflow.models.saving import plain_model, read_metadata, save_model
from alignflow.runtime import autocast

OFFSET_KEY = "alignflow_reward_offset"


def save_reward_model(model, tokenizer, out_dir: str | Path, metadata: dict[str, Any], *, offset: float) -> Path:
    plain = plain_model(model)
    head = reward_head(plain)
    with torch.no_grad():
        if head.bias is not None:
            head.bias += offset
            try:
                return save_model(plain, tokenizer, out_dir, {**metadata, "reward_offset": offset,
                                                              "offset_in": "head_bias"})
            finally:
                head.bias -= offset
    setattr(plain.config, OFFSET_KEY, offset)
    try:
        return save_model(plain, tokenizer, out_dir, {**metadata, "reward_offset": offset, "offset_in": "config"})
    finally:
        delattr(plain.config, OFFSET_KEY)


class RewardModelScorer:
    """Scores (prompt messages, response) pairs with a saved reward-model folder, batched."""

    def __init__(self, model_dir: str | Path, *, batch_size: int = 16, dtype: str = "bf16") -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir} is not a reward-model folder (no config.json)")
        check_model_folder(self.model_dir)  # a truncated weights file is named, not a safetensors traceback
        meta = read_metadata(self.model_dir)
        saved = meta.get("config", {})
        model_cfg = ModelConfig(**{k: v for k, v in saved.get("model", {}).items() if k in ("chat_template",)})
        data_cfg = saved.get("data", {})
        self.tokenizer = load_tokenizer(str(self.model_dir))
        self.model = AutoModelForSequenceClassification.from_pretrained(self.model_dir).eval()
        disable_dropout(self.model)
        self.offset = float(getattr(self.model.config, OFFSET_KEY, 0.0) or 0.0)
        self.encoder = PromptResponseEncoder(
            self.tokenizer,
            ChatFormatter(self.tokenizer, template=model_cfg.chat_template),
            max_length=int(data_cfg.get("max_length", 512)),
            max_prompt_length=int(data_cfg.get("max_prompt_length", 384)),
        )
        self.batch_size = batch_size
        self.dtype = dtype

    @torch.no_grad()
    def score(self, prompts: list[list[Message]], responses: list[str]) -> torch.Tensor:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        encoded = [self.encoder.encode(p, r).input_ids for p, r in zip(prompts, responses)]
        scores = []
        for start in range(0, len(encoded), self.batch_size):
            batch = pad_right(encoded[start : start + self.batch_size], self.tokenizer.pad_token_id)
            with autocast(self.dtype):
                scores.append(self.model(**batch).logits[:, 0].float())
        return torch.cat(scores) + self.offset if scores else torch.zeros(0)

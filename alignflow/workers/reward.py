"""The reward worker: decodes responses and scores them with the configured `RewardFunction`."""

from __future__ import annotations

import torch

from alignflow.batch import Batch
from alignflow.config.rl import RLConfig
from alignflow.models import load_tokenizer
from alignflow.rewards import RewardFunction, build_reward_function
from alignflow.workers.base import dispatch

# Meta that is model input, not information for a reward function.
_NOT_METADATA = ("prompt", "prompt_token_ids")


class RewardWorker:
    """``compute_scores(batch)``: ``raw_scores`` ``(B,)`` plus the decoded ``response_text``.

    Built from ``(config, role)``; ``reward_fn`` replaces the config's reward (tests, notebooks; it
    must be picklable to reach a Ray worker)."""

    def __init__(self, config: RLConfig, role: str = "reward", reward_fn: RewardFunction | None = None) -> None:
        self.cfg, self.role, self.reward_fn = config, role, reward_fn

    def init_model(self) -> None:
        self.tokenizer = load_tokenizer(self.cfg.model.name)  # the policy's, to decode its tokens
        if self.reward_fn is None:
            self.reward_fn = build_reward_function(rewards=self.cfg.reward_specs, dtype=self.cfg.model.dtype)

    @dispatch("split")
    def compute_scores(self, batch: Batch) -> Batch:
        """Needs ``response_ids``/``response_mask``/``has_eos`` and meta ``prompt`` (chat messages)."""
        ids, mask = batch["response_ids"], batch["response_mask"].bool()
        texts = self.tokenizer.batch_decode([row[keep].tolist() for row, keep in zip(ids, mask)],
                                            skip_special_tokens=True)
        metadata = {k: v for k, v in batch.meta.items() if k not in _NOT_METADATA}
        metadata["has_eos"] = batch["has_eos"].tolist()
        metadata["response_length"] = mask.sum(-1).tolist()  # policy tokens, for length penalties
        scores = self.reward_fn(batch["prompt"], texts, metadata)
        if len(scores) != len(texts):
            raise ValueError(f"the reward function returned {len(scores)} scores for {len(texts)} responses")
        return Batch(tensors={"raw_scores": torch.as_tensor([float(s) for s in scores], dtype=torch.float32)},
                     meta={"response_text": texts})

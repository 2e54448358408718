"""The reward worker: decodes responses and scores them with a `RewardFunction`."""

from __future__ import annotations

import torch

from alignflow.batch import Batch
from alignflow.rewards import RewardFunction
from alignflow.workers.base import dispatch

# Meta that is model input, not information for a reward function.
_NOT_METADATA = ("prompt", "prompt_token_ids")


class RewardWorker:
    """``compute_scores(batch)``: ``raw_scores`` ``(B,)`` plus the decoded ``response_text``."""

    def __init__(self, reward_fn: RewardFunction, tokenizer) -> None:
        self.reward_fn, self.tokenizer = reward_fn, tokenizer

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

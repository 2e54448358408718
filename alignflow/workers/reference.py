"""The reference policy: log-probs of the sampled responses under the initial policy.

Two ways to hold it, chosen from the actor's model:

* full fine-tuning: a frozen deep copy of the policy taken before the first update;
* LoRA: the actor's own module with its adapters switched off (peft's ``disable_adapter()``),
  which *is* the initial policy, so no second copy of the weights is kept.
"""

from __future__ import annotations

import contextlib
import copy

import torch

from alignflow.batch import Batch
from alignflow.runtime import autocast
from alignflow.workers.actor import response_logprobs
from alignflow.workers.base import dispatch


def is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


class ReferenceWorker:
    """``compute_ref_logprobs(batch)`` at the same temperature as the actor's log-probs."""

    def __init__(self, model, *, temperature: float, dtype: str = "fp32", disable_adapter: bool = False) -> None:
        if disable_adapter and not is_peft_model(model):
            raise ValueError("disable_adapter=True needs a peft (LoRA) model")
        self.model, self.temperature, self.dtype, self.disable_adapter = model, temperature, dtype, disable_adapter

    @classmethod
    def from_policy(cls, policy, *, temperature: float, dtype: str = "fp32") -> ReferenceWorker:
        """The reference for ``policy`` before it is trained: its disabled adapters, or a frozen copy."""
        if is_peft_model(policy):
            return cls(policy, temperature=temperature, dtype=dtype, disable_adapter=True)
        frozen = copy.deepcopy(policy).eval()
        frozen.requires_grad_(False)
        return cls(frozen, temperature=temperature, dtype=dtype)

    @dispatch("split")
    @torch.no_grad()
    def compute_ref_logprobs(self, batch: Batch) -> Batch:
        """``ref_logprobs`` ``(B, R)``, 0 on padding."""
        was_training = self.model.training
        self.model.eval()
        adapters_off = self.model.disable_adapter() if self.disable_adapter else contextlib.nullcontext()
        try:
            with adapters_off, autocast(self.dtype):
                logprobs, _ = response_logprobs(self.model, batch, self.temperature)
        finally:
            self.model.train(was_training)
        return Batch(tensors={"ref_logprobs": logprobs})

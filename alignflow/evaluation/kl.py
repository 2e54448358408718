"""Sequence KL of a policy to a reference model, on the policy's own sampled responses.

``KL(policy || ref)`` over whole responses is ``E_{y ~ policy}[log policy(y|x) - log ref(y|x)]``;
with responses sampled from the policy, the mean over prompts of the per-response sum of token
log-ratios (the k1 estimator of :mod:`alignflow.algorithms.kl`) is an unbiased estimate. It is the
"distance travelled" axis of reward-vs-KL plots (Gao et al. 2023) and the quantity the RL KL
penalty controls.

Both models score the tokens under ``softmax(logits / T)`` with the sampling temperature ``T``
(1 for greedy), as in training. The estimate is exact only for plain sampling: top-k, top-p,
repetition penalties and greedy decoding draw from a different distribution than the one
scored, so keep them off (the default here) for a KL you mean to report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignflow.algorithms import kl_estimate, masked_sum
from alignflow.config.schema import ModelConfig
from alignflow.evaluation.generate import Prompt, ResponseGenerator, eval_mode
from alignflow.evaluation.metrics import Estimate, mean_ci
from alignflow.models.forward import causal_lm_parts, response_logprobs
from alignflow.models.loading import load_policy
from alignflow.rollout import SamplingParams
from alignflow.runtime import autocast


@dataclass(frozen=True)
class SequenceKL:
    kl: Estimate  # mean over responses of sum_t (logp - ref_logp), nats, with its interval
    kl_k3: float  # the same with the k3 estimator: also unbiased, lower variance, never negative
    mean_tokens: float  # response tokens per sample (EOS included)
    per_sample: tuple[float, ...]  # k1 sequence KL of each response, in prompt order

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sequence_kl(
    generator: ResponseGenerator,
    reference: nn.Module | str | Path,
    prompts: Sequence[Prompt],
    params: SamplingParams | None = None,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> SequenceKL:
    """KL of ``generator``'s policy to ``reference`` (a model or a name to load) on ``prompts``.

    The reference must share the policy's tokenizer (e.g. the SFT model the policy started from).
    """
    params = params or SamplingParams(temperature=1.0, seed=seed)
    ref_model = _load_reference(reference) if isinstance(reference, str | Path) else reference
    _check_same_vocab(generator.model, ref_model)
    temperature = params.temperature if params.do_sample else 1.0
    per_prompt: dict[int, list[tuple[float, float, int]]] = {}
    for chunk, batch in generator.generate_batches(prompts, params):
        with eval_mode(generator.model, ref_model), torch.no_grad(), autocast(generator.dtype):
            logp, _ = response_logprobs(generator.model, batch, temperature)
            ref_logp, _ = response_logprobs(ref_model, batch, temperature)
        mask = batch["response_mask"]
        k1 = masked_sum(kl_estimate(logp, ref_logp, "k1"), mask, dim=-1).tolist()
        k3 = masked_sum(kl_estimate(logp, ref_logp, "k3"), mask, dim=-1).tolist()
        tokens = mask.sum(-1).tolist()
        for row, local in enumerate(batch["prompt_index"]):
            per_prompt.setdefault(chunk[local], []).append((k1[row], k3[row], tokens[row]))
    rows = [r for index in range(len(prompts)) for r in per_prompt[index]]
    k1_values = [r[0] for r in rows]
    return SequenceKL(
        kl=mean_ci(k1_values, n_bootstrap=n_bootstrap, level=level, seed=seed),
        kl_k3=sum(r[1] for r in rows) / len(rows),
        mean_tokens=sum(r[2] for r in rows) / len(rows),
        per_sample=tuple(k1_values),
    )


def _load_reference(name: str | Path) -> nn.Module:
    model, _ = load_policy(ModelConfig(name=str(name), dtype="fp32"))
    return model


def _check_same_vocab(policy: nn.Module, reference: nn.Module) -> None:
    sizes = [causal_lm_parts(m)[1].weight.shape[0] for m in (policy, reference)]
    if sizes[0] != sizes[1]:
        raise ValueError(f"the policy and the reference have different vocabularies ({sizes[0]} and {sizes[1]} "
                         "tokens): sequence KL needs the reference the policy was trained from")

"""Generate evaluation responses with the rollout engine, best-of-n baselines and sampling sweeps.

:class:`ResponseGenerator` holds one loaded policy, its chat formatting and an
:class:`~alignflow.rollout.HFRolloutEngine`, so every probe (win rates, KL, refusals, TruthfulQA)
reuses one loaded policy (in bf16, sampling runs from a packed bf16 copy of it, as RL rollouts do).
Prompts are formatted exactly as in training (the model's chat template, or the plain
Human/Assistant layout) and cut from the left to ``max_prompt_length``.

Prompts are batched in order of length (less padding); results come back in prompt order, with
a prompt's ``n`` samples consecutive. With ``params.seed`` set, batch ``i`` uses ``seed + i``,
so a run is reproducible without every batch drawing the same random numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignflow.batch import Batch
from alignflow.config.schema import ModelConfig
from alignflow.data.formatting import ChatFormatter, Template
from alignflow.data.tokenize import PromptResponseEncoder
from alignflow.data.types import Message, PromptExample
from alignflow.evaluation.metrics import (
    Estimate,
    LengthStats,
    distinct_n,
    eos_rate,
    length_stats,
    mean_ci,
    mean_repeated_ngram_rate,
)
from alignflow.models.loading import load_policy
from alignflow.rollout import HFRolloutEngine, SamplingParams
from alignflow.runtime import effective_dtype
from alignflow.workers.policy import rollout_module, sampling_precision

Prompt = str | list[Message] | PromptExample


class _HasScore(Protocol):
    def score(self, prompts: list[list[Message]], responses: list[str]) -> Any: ...


# A RewardModelScorer, or any function (prompts, responses) -> one float per response.
Scorer = _HasScore | Callable[[list[list[Message]], list[str]], Sequence[float]]


@dataclass(frozen=True)
class Generation:
    prompt_index: int  # index into the prompts passed in
    text: str  # decoded response, special tokens and any stop string removed
    num_tokens: int  # generated tokens, EOS included (as in the RL training logs)
    has_eos: bool  # False: cut at max_new_tokens

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_messages(prompt: Prompt) -> list[Message]:
    """A prompt as chat messages: a string becomes one user message."""
    if isinstance(prompt, PromptExample):
        return prompt.prompt
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)


class ResponseGenerator:
    """One policy ready to answer prompts: ``generate(prompts, params) -> list[Generation]``."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_prompt_length: int = 384,
        chat_template: Template = "auto",
        dtype: str = "fp32",
        batch_size: int = 16,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer = model, tokenizer
        self.formatter = ChatFormatter(tokenizer, template=chat_template)
        # Only encode_prompt is used here, so max_length just has to exceed max_prompt_length.
        self.encoder = PromptResponseEncoder(tokenizer, self.formatter, max_length=max_prompt_length + 1,
                                             max_prompt_length=max_prompt_length)
        # bf16 sampling runs from a frozen bf16 copy taken here, packed as RL rollouts are: autocast
        # re-casts every weight at every token (SmolLM2-135M, 8 HH prompts x 64 tokens, 2 AVX512-BF16
        # cores: 3.3-3.7 s a call against 7.1-7.5 s). ``model`` stays as given for the passes that
        # read it (log-probs, KL, the eval reference).
        device_type = next(model.parameters()).device.type
        weights = "bf16" if effective_dtype(dtype, device_type) == "bf16" else "shared"
        self.engine = HFRolloutEngine.from_tokenizer(rollout_module(model, weights), tokenizer)
        self.dtype, self.device_type, self.batch_size = dtype, device_type, batch_size

    @classmethod
    def load(cls, name: str | Path, *, dtype: str = "fp32", chat_template: Template = "auto",
             **kwargs: Any) -> ResponseGenerator:
        """Load a model folder, alias, ``.gguf`` file or hub id (fp32 weights, read under ``dtype``'s
        autocast; in bf16, sampling runs from a bf16 copy)."""
        model, tokenizer = load_policy(ModelConfig(name=str(name), dtype=dtype, chat_template=chat_template))
        return cls(model, tokenizer, dtype=dtype, chat_template=chat_template, **kwargs)

    def encode_prompts(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        return [self.encoder.encode_prompt(as_messages(p))[0] for p in prompts]

    def generate_batches(self, prompts: Sequence[Prompt], params: SamplingParams) -> Iterator[tuple[list[int], Batch]]:
        """``(prompt indices, engine batch)`` per batch; rows are ``params.n`` per prompt, in that order.

        The batch holds the tensors listed in :mod:`alignflow.rollout.base`; ``response_mask``
        ends at the first EOS. For probes that need log-probs, not only text.
        """
        if not prompts:
            raise ValueError("no prompts to generate from")
        ids = self.encode_prompts(prompts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for number, start in enumerate(range(0, len(order), self.batch_size)):
            chunk = order[start : start + self.batch_size]
            batch_params = params if params.seed is None else replace(params, seed=params.seed + number)
            with sampling_precision(self.engine.model, self.dtype, self.device_type):
                batch = self.engine.generate([ids[i] for i in chunk], batch_params)
            yield chunk, batch

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, *, on_batch: Callable[[int], None] | None = None
    ) -> list[Generation]:
        """``len(prompts) * params.n`` responses in prompt order (a prompt's samples consecutive).

        ``on_batch(k)`` is called after each batch with its number of prompts (progress bars).
        """
        rows: dict[int, list[Generation]] = {}
        for chunk, batch in self.generate_batches(prompts, params):
            for generation in self.decode(batch, params.stop_strings):
                index = chunk[generation.prompt_index]  # the engine numbers prompts within the batch
                rows.setdefault(index, []).append(replace(generation, prompt_index=index))
            if on_batch is not None:
                on_batch(len(chunk))
        return [g for index in range(len(prompts)) for g in rows[index]]

    def decode(self, batch: Batch, stop_strings: Sequence[str] = ()) -> list[Generation]:
        """One :class:`Generation` per batch row (``prompt_index`` is the row's index in ``meta``)."""
        out = []
        masks, has_eos = batch["response_mask"].bool(), batch["has_eos"].tolist()
        for row, (ids, mask) in enumerate(zip(batch["response_ids"], masks)):
            kept = ids[mask].tolist()
            text = self.tokenizer.decode(kept[:-1] if has_eos[row] else kept, skip_special_tokens=True)
            out.append(Generation(batch["prompt_index"][row], _cut_at_stop(text, stop_strings), len(kept),
                                  bool(has_eos[row])))
        return out


@contextlib.contextmanager
def eval_mode(*models: torch.nn.Module) -> Iterator[None]:
    """Models in eval mode for a block, then back to how they were (a policy may be mid-training)."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def _cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
    return text[: min(cuts)] if cuts else text


def generate_responses(
    model: str | Path | ResponseGenerator, prompts: Sequence[Prompt], params: SamplingParams, **kwargs: Any
) -> list[Generation]:
    """:meth:`ResponseGenerator.generate` from a loaded generator or a model name (loaded once here)."""
    generator = model if isinstance(model, ResponseGenerator) else ResponseGenerator.load(model, **kwargs)
    return generator.generate(prompts, params)


def score_responses(scorer: Scorer, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
    """One float per response from a :class:`~alignflow.models.reward_io.RewardModelScorer` or a function."""
    messages = [as_messages(p) for p in prompts]
    raw = scorer.score(messages, list(responses)) if hasattr(scorer, "score") else scorer(messages, list(responses))
    scores = raw.tolist() if isinstance(raw, torch.Tensor) else [float(s) for s in raw]
    if len(scores) != len(responses):
        raise ValueError(f"the scorer returned {len(scores)} scores for {len(responses)} responses")
    return [float(s) for s in scores]


# ----------------------------------------------------------------------------- best-of-n


@dataclass(frozen=True)
class BestOfN:
    prompt_index: int
    best: Generation  # the highest-scoring sample
    score: float
    scores: tuple[float, ...]  # every sample's score, in sampling order

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def best_of_n(
    generator: ResponseGenerator,
    prompts: Sequence[Prompt],
    scorer: Scorer,
    n: int,
    params: SamplingParams | None = None,
) -> list[BestOfN]:
    """Sample ``n`` responses per prompt and keep the one ``scorer`` rates highest.

    A strong, training-free baseline policy (rejection sampling, as in Nakano et al. 2021 and
    Gao et al. 2023): RL should beat best-of-n at a similar KL, and best-of-n against the proxy
    reward scored by an independent judge shows how hackable the reward model is.
    """
    params = params or SamplingParams()
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > 1 and not params.do_sample:
        raise ValueError("best_of_n with n > 1 needs do_sample=True (greedy samples are all the same)")
    samples = generator.generate(prompts, replace(params, n=n))
    scores = score_responses(scorer, [prompts[g.prompt_index] for g in samples], [g.text for g in samples])
    results = []
    for index in range(len(prompts)):
        own = scores[index * n : (index + 1) * n]
        best = max(range(n), key=own.__getitem__)  # the first sample among equals
        results.append(BestOfN(index, samples[index * n + best], own[best], tuple(own)))
    return results


# ----------------------------------------------------------------------------- sampling sweep


@dataclass(frozen=True)
class SweepPoint:
    label: str  # the settings that differ from the defaults, e.g. "temperature=0.7, top_p=0.9"
    params: dict[str, Any]
    reward: Estimate | None  # mean score with its interval; None without a scorer
    length: LengthStats
    eos_rate: float
    distinct_1: float
    distinct_2: float
    repeated_ngram_rate: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_params(params: SamplingParams) -> str:
    """The fields that differ from ``SamplingParams()`` (``max_new_tokens``, ``n`` and ``seed`` left out);
    the temperature is always named when sampling, since it is the setting people sweep first."""
    changed = [] if params.do_sample else ["greedy"]
    default = SamplingParams()
    for f in fields(SamplingParams):
        if f.name in ("do_sample", "max_new_tokens", "n", "seed"):
            continue
        if f.name == "temperature" and params.do_sample:
            changed.append(f"temperature={params.temperature}")
            continue
        if not params.do_sample and f.name in ("temperature", "top_k", "top_p"):
            continue
        value = getattr(params, f.name)
        if value != getattr(default, f.name):
            changed.append(f"{f.name}={value}")
    return ", ".join(changed)


def sweep_sampling(
    generator: ResponseGenerator,
    prompts: Sequence[Prompt],
    settings: Sequence[SamplingParams],
    scorer: Scorer | None = None,
    *,
    ngram_n: int = 3,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> list[SweepPoint]:
    """Generate once per setting and report reward, length and diversity: how much of a policy's
    quality (or its failure modes) comes from decoding rather than from training."""
    points = []
    for params in settings:
        generations = generator.generate(prompts, params)
        texts = [g.text for g in generations]
        reward = None
        if scorer is not None:
            scores = score_responses(scorer, [prompts[g.prompt_index] for g in generations], texts)
            reward = mean_ci(scores, n_bootstrap=n_bootstrap, seed=seed)
        points.append(SweepPoint(
            label=describe_params(params), params=asdict(params), reward=reward,
            length=length_stats([g.num_tokens for g in generations]),
            eos_rate=eos_rate([g.has_eos for g in generations]),
            distinct_1=distinct_n(texts, 1), distinct_2=distinct_n(texts, 2),
            repeated_ngram_rate=mean_repeated_ngram_rate(texts, ngram_n),
        ))
    return points

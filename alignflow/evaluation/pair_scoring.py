"""Scores of preference pairs (:class:`~alignflow.evaluation.pair_quality.PairScores`) from a judge of any kind.

* :func:`score_pairs`: any scorer ``(prompts, responses) -> rewards`` (a reward model, a classifier,
  a scikit-learn judge); lengths in word tokens, so every judge meets the same length rule;
* :func:`reward_model_pairs`: a reward-model folder, with lengths in its own tokens as ``rm train``
  counts them (so the length rule matches the one saved with the model);
* :func:`implicit_reward_pairs`: a DPO policy's implicit reward ``beta * (log pi - log pi_ref)``
  (Rafailov et al. 2023, eq. 5), with the same response log-probs DPO training uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alignflow.config.schema import DataConfig, ModelConfig
from alignflow.data.types import PreferenceExample
from alignflow.evaluation.generate import Scorer, score_responses
from alignflow.evaluation.metrics import word_tokens
from alignflow.evaluation.pair_quality import PairScores
from alignflow.trainers.pair_eval import response_lengths, source_name


def score_pairs(scorer: Scorer, examples: Sequence[PreferenceExample]) -> PairScores:
    prompts = [e.prompt for e in examples]
    chosen = score_responses(scorer, prompts, [e.chosen for e in examples])
    rejected = score_responses(scorer, prompts, [e.rejected for e in examples])
    return PairScores(torch.tensor(chosen), torch.tensor(rejected),
                      torch.tensor([len(word_tokens(e.chosen)) for e in examples]),
                      torch.tensor([len(word_tokens(e.rejected)) for e in examples]),
                      [source_name(e.source) for e in examples])


def reward_model_pairs(model_dir: str, examples: Sequence[PreferenceExample], *, batch_size: int = 8,
                       dtype: str = "bf16") -> PairScores:
    """A reward-model folder's scores, computed as ``rm train`` scores its validation pairs: a decoder
    runs each pair's prompt once, then chosen and rejected (``models.shared_prefix``; the same
    scores as each sequence alone), an encoder the two sequences apart. ``batch_size``: pairs a forward."""
    from alignflow.models.reward_io import RewardModelScorer
    from alignflow.models.shared_prefix import shares_prefix_exactly
    from alignflow.trainers.reward import pair_rewards, pair_scores

    scorer = RewardModelScorer(model_dir, batch_size=batch_size, dtype=dtype)
    pairs = [scorer.encoder.encode_pair(e.prompt, e.chosen, e.rejected) for e in examples]
    with torch.no_grad():
        chosen, rejected = pair_rewards(lambda batch: pair_scores(scorer.model, batch), pairs, batch_size,
                                        scorer.tokenizer.pad_token_id, dtype,
                                        share_prompt=shares_prefix_exactly(scorer.model))
    return PairScores(chosen + scorer.offset, rejected + scorer.offset, *response_lengths(pairs),
                      [source_name(e.source) for e in examples])


def implicit_reward_pairs(policy: str, reference: str, examples: Sequence[PreferenceExample], *, beta: float,
                          batch_size: int = 8, dtype: str = "bf16") -> PairScores:
    """``policy``'s DPO reward against ``reference`` on each response; the encoding (chat template,
    length budget) is the one the policy was trained with, read from its ``alignflow.json``."""
    from alignflow.models import load_policy, read_metadata, resolve_model
    from alignflow.models.shared_prefix import shares_prefix_exactly
    from alignflow.trainers.data_setup import make_encoder
    from alignflow.trainers.dpo_logps import batched_pair_logps

    saved = read_metadata(resolve_model(policy).path).get("config", {})
    template = saved.get("model", {}).get("chat_template", "auto")
    data = saved.get("data", {})
    model, tokenizer = load_policy(ModelConfig(name=policy, chat_template=template))
    encoder = make_encoder(tokenizer, ModelConfig(name=policy, chat_template=template),
                           DataConfig(max_length=int(data.get("max_length", 1024)),
                                      max_prompt_length=int(data.get("max_prompt_length", 512))))
    pairs = [encoder.encode_pair(e.prompt, e.chosen, e.rejected) for e in examples]

    def logps(model) -> torch.Tensor:
        # Each pair's prompt once where the model computes it exactly so (as DPO training does).
        return batched_pair_logps(model, pairs, batch_size=batch_size, pad_token_id=tokenizer.pad_token_id,
                                  dtype=dtype, share_prompt=shares_prefix_exactly(model))[0]

    policy_logps = logps(model)
    del model
    reference_model, _ = load_policy(ModelConfig(name=reference, chat_template=template))
    rewards = beta * (policy_logps - logps(reference_model))
    return PairScores(rewards[:, 0], rewards[:, 1], *response_lengths(pairs), [source_name(e.source) for e in examples])

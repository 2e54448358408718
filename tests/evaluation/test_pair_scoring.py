"""Pair scoring for ``rm eval``: each pair's prompt computed once where the model can, with the
same scores as each sequence scored alone."""

from __future__ import annotations

import pytest
import torch

import alignflow.models.shared_prefix as shared_prefix
import alignflow.trainers.dpo_logps as dpo_logps
import alignflow.trainers.reward as reward
from alignflow.data.types import PreferenceExample
from alignflow.evaluation.pair_scoring import implicit_reward_pairs, reward_model_pairs
from alignflow.models.reward_io import RewardModelScorer

EXAMPLES = [
    PreferenceExample([{"role": "user", "content": "What is the capital of France?"}],
                      "Paris, a city on the Seine.", "I don't know.", "pairs.jsonl:1"),
    PreferenceExample([{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."},
                       {"role": "user", "content": "Name a colour."}], "Blue.", "Green, like grass in spring.",
                      "pairs.jsonl:2"),
    PreferenceExample([{"role": "user", "content": "Add two and two."}], "Four.", "Five.", "pairs.jsonl:3"),
]


@pytest.fixture(scope="module")
def bert_rm_dir(tiny_bert_dir, tmp_path_factory):
    """An encoder reward model (random head) on the tiny BERT."""
    from transformers import AutoModelForSequenceClassification

    from alignflow.models import load_tokenizer
    from alignflow.models.reward_io import save_reward_model

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=1)
    return save_reward_model(model, load_tokenizer(str(tiny_bert_dir)), tmp_path_factory.mktemp("bert-rm") / "model",
                             {"kind": "reward_model"}, offset=0.5)


@pytest.fixture
def packs(monkeypatch):
    """How many shared-prefix packs the reward and DPO code built."""
    built = []

    def counting(module):
        original = module.pack_shared_prefix
        monkeypatch.setattr(module, "pack_shared_prefix", lambda *a, **k: built.append(1) or original(*a, **k))

    counting(reward)
    counting(dpo_logps)
    return built


def test_a_decoder_reward_model_shares_each_prompt_and_scores_as_alone(tiny_rm_dir, packs):
    scores = reward_model_pairs(str(tiny_rm_dir), EXAMPLES, batch_size=2, dtype="fp32")
    assert len(packs) == 2  # 2 pairs a forward, each prompt once before chosen and rejected
    scorer = RewardModelScorer(tiny_rm_dir, batch_size=1, dtype="fp32")
    prompts = [e.prompt for e in EXAMPLES]
    alone_chosen = scorer.score(prompts, [e.chosen for e in EXAMPLES])
    alone_rejected = scorer.score(prompts, [e.rejected for e in EXAMPLES])
    torch.testing.assert_close(scores.chosen, alone_chosen, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores.rejected, alone_rejected, atol=1e-5, rtol=1e-5)
    assert scores.sources == ["pairs"] * 3


def test_an_encoder_reward_model_scores_the_two_sequences_apart(bert_rm_dir, packs):
    scores = reward_model_pairs(str(bert_rm_dir), EXAMPLES, batch_size=2, dtype="fp32")
    assert not packs  # an encoder reads every token both ways: no prompt can be shared
    scorer = RewardModelScorer(bert_rm_dir, batch_size=16, dtype="fp32")
    alone = scorer.score([e.prompt for e in EXAMPLES], [e.chosen for e in EXAMPLES])
    torch.testing.assert_close(scores.chosen, alone, atol=1e-5, rtol=1e-5)


def test_no_pairs_give_empty_scores(tiny_rm_dir):
    scores = reward_model_pairs(str(tiny_rm_dir), [], dtype="fp32")
    assert scores.chosen.shape == scores.rejected.shape == (0,)


def test_dpo_implicit_rewards_share_each_prompt_and_equal_the_unshared_ones(policy_dir, other_policy_dir, packs,
                                                                         monkeypatch):
    shared = implicit_reward_pairs(str(policy_dir), str(other_policy_dir), EXAMPLES, beta=0.5, dtype="fp32")
    assert len(packs) == 2  # one pack a model: the policy and the reference
    monkeypatch.setattr(shared_prefix, "shares_prefix_exactly", lambda model: False)
    apart = implicit_reward_pairs(str(policy_dir), str(other_policy_dir), EXAMPLES, beta=0.5, dtype="fp32")
    assert len(packs) == 2
    assert shared.chosen.abs().max() > 1e-3  # two different models: rewards that are not all zero
    torch.testing.assert_close(shared.chosen, apart.chosen, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.rejected, apart.rejected, atol=1e-5, rtol=1e-5)

"""kind: classifier -- a sequence-classification folder as a reward: label choice, outputs, prompt, batching."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from alignflow.config.loader import ConfigError
from alignflow.config.rewards import RewardSpec, validate_reward_specs
from alignflow.rewards import ClassifierReward, build_reward_function
from alignflow.rewards.build import build_reward_scorer

PROMPTS = [[{"role": "user", "content": "Continue this movie review: The film was"}]] * 3
RESPONSES = ["a joke and bread, two plus two.", "the capital of France is Paris", "I cannot help with that request"]


@pytest.fixture(scope="module")
def sentiment_dir(tiny_bert_dir, tmp_path_factory):
    """The tiny BERT encoder with a random 2-label head named negative/positive, as `classifier` saves it."""
    path = tmp_path_factory.mktemp("tiny-sentiment")
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(path)
    return path


def score(path, responses=RESPONSES, prompts=PROMPTS, **kwargs):
    return ClassifierReward(path, **kwargs)(prompts[: len(responses)], responses, {})


def test_label_by_name_or_index_and_outputs_agree(sentiment_dir):
    by_name = score(sentiment_dir, class_label="positive", output="logprob")
    assert by_name == score(sentiment_dir, class_label=1, output="logprob") == score(
        sentiment_dir, class_label="1", output="logprob")
    negative = score(sentiment_dir, class_label="negative", output="probability")
    positive = score(sentiment_dir, class_label="positive", output="probability")
    assert all(math.isclose(p + n, 1.0, rel_tol=1e-5) for p, n in zip(positive, negative))
    assert all(math.isclose(math.log(p), lp, abs_tol=1e-5) for p, lp in zip(positive, by_name))
    decisions = score(sentiment_dir, class_label="positive", output="decision")
    assert decisions == [float(p > 0.5) for p in positive]
    logit_pos = score(sentiment_dir, class_label="positive", output="logit")
    logit_neg = score(sentiment_dir, class_label="negative", output="logit")
    # log p(pos) - log p(neg) is the logit margin: the softmax does not change differences
    margins = [math.log(p) - math.log(n) for p, n in zip(positive, negative)]
    assert all(math.isclose(a - b, m, abs_tol=1e-4) for a, b, m in zip(logit_pos, logit_neg, margins))


def test_with_prompt_reads_prompt_and_response_as_one_text(sentiment_dir):
    with_prompt = score(sentiment_dir, class_label="positive", output="logit", with_prompt=True)
    joined = [f"Continue this movie review: The film was {r}" for r in RESPONSES]
    assert with_prompt == pytest.approx(score(sentiment_dir, joined, class_label="positive", output="logit"),
                                        abs=1e-6)
    assert with_prompt != pytest.approx(score(sentiment_dir, class_label="positive", output="logit"), abs=1e-6)


def test_batching_does_not_change_scores(sentiment_dir):
    one = score(sentiment_dir, class_label="positive", output="logit", batch_size=1)
    many = score(sentiment_dir, class_label="positive", output="logit", batch_size=32)
    assert one == pytest.approx(many, abs=1e-5)


def test_unknown_label_names_the_key_and_the_labels(sentiment_dir):
    spec = RewardSpec(kind="classifier", path=str(sentiment_dir), class_label="happy")
    with pytest.raises(ConfigError, match=r"rewards\[0\]\.class_label: 'happy' .* its labels: 0=negative, 1=positive"):
        build_reward_function(rewards=[spec])
    with pytest.raises(ConfigError, match=r"judge_reward\.class_label: 7"):
        build_reward_scorer(RewardSpec(kind="classifier", path=str(sentiment_dir), class_label=7), "judge_reward")


def test_a_classifier_term_sums_and_scores_like_the_reward(sentiment_dir):
    spec = RewardSpec(kind="classifier", path=str(sentiment_dir), class_label="positive", output="logit", weight=2.0)
    total = build_reward_function(rewards=[spec], dtype="fp32")(PROMPTS, RESPONSES, {})
    assert total == pytest.approx([2 * s for s in score(sentiment_dir, class_label="positive", output="logit")])
    scorer = build_reward_scorer(RewardSpec(kind="classifier", path=str(sentiment_dir), class_label="positive"),
                                 "proxy_reward", dtype="fp32")
    assert scorer.score(PROMPTS, RESPONSES) == score(sentiment_dir, class_label="positive")


@pytest.mark.parametrize(("spec", "message"), [
    (RewardSpec(kind="classifier", path="x"), r"rewards\[0\]\.class_label must name"),
    (RewardSpec(kind="classifier", class_label="positive"), r"rewards\[0\]\.path must name a classifier folder"),
    (RewardSpec(kind="text_classifier", path="x", class_label=1, max_length=64),
     r"rewards\[0\]\.max_length is not used by kind=text_classifier"),
    (RewardSpec(kind="reward_model", path="x", class_label="positive"),
     r"rewards\[0\]\.class_label is not used by kind=reward_model"),
])
def test_classifier_keys_are_checked(spec, message):
    with pytest.raises(ConfigError, match=message):
        validate_reward_specs([spec])

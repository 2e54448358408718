"""alignflow eval with a classifier as the proxy and the TF-IDF judge's decision as the judge: the judge's
mean is then the positive rate, with its interval."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from alignflow.config.eval import BootstrapConfig, EvalConfig, EvalPromptsConfig, KLSettings, SamplingConfig
from alignflow.config.loader import ConfigError
from alignflow.config.rewards import RewardSpec
from alignflow.evaluation.runner import run_evaluation
from alignflow.rewards import TextClassifier

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    texts = ["the capital of france is paris", "bake bread with flour", "i cannot help with that",
             "it could hurt someone"] * 5
    folder = tmp_path_factory.mktemp("tfidf-judge")
    TextClassifier.fit(texts, [1, 1, 0, 0] * 5, ["negative", "positive"]).save(folder)
    return folder


@pytest.fixture(scope="module")
def sentiment_dir(tiny_bert_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-sentiment")
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=2, id2label={0: "negative", 1: "positive"}).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(path)
    return path


def test_judge_decision_mean_is_the_positive_rate(tiny_llama_dir, sentiment_dir, judge_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Continue this movie review: film {i} was"}) + "\n"
                               for i in range(6)))
    cfg = EvalConfig(
        output_dir=str(tmp_path / "eval"), models={"base": str(tiny_llama_dir), "pol": str(tiny_llama_dir)},
        prompts=EvalPromptsConfig(validation=str(prompts), max_prompts=6),
        proxy_reward=RewardSpec(kind="classifier", path=str(sentiment_dir), class_label="positive", output="logit"),
        judge_reward=RewardSpec(kind="text_classifier", path=str(judge_dir), class_label="positive",
                                output="decision"),
        sampling=SamplingConfig(max_new_tokens=8), batch_size=4, bootstrap=BootstrapConfig(n=50),
        kl=KLSettings(enabled=False), dtype="fp32")
    result = run_evaluation(cfg, Console(quiet=True))
    samples = [json.loads(line) for line in (result.output_dir / "samples.jsonl").read_text().splitlines()]
    judged = result.models["base"].main.judge
    assert set(judged) <= {0.0, 1.0} and len(judged) == 6
    rate = result.metrics["models"]["base"]["judge_reward"]
    assert rate["value"] == pytest.approx(sum(judged) / 6) and rate["low"] <= rate["value"] <= rate["high"]
    assert len(samples) == 6


def test_a_folder_and_an_entry_for_the_same_role_is_an_error(sentiment_dir):
    spec = RewardSpec(kind="classifier", path=str(sentiment_dir), class_label="positive")
    cfg = EvalConfig(models={"a": "x"}, proxy_reward_model="rm", proxy_reward=spec)
    with pytest.raises(ConfigError, match="set one of proxy_reward_model .* and proxy_reward"):
        cfg.validate()
    bad = EvalConfig(models={"a": "x"}, proxy_reward=RewardSpec(kind="classifier", path="p"))
    with pytest.raises(ConfigError, match=r"proxy_reward\.class_label must name"):
        bad.validate()

"""The TF-IDF + logistic-regression judge: fitted, saved as JSON, reloaded with identical scores, no pickle."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest

from alignflow.config.classify import LabelledDataConfig, TextClassifierConfig
from alignflow.config.loader import ConfigError
from alignflow.config.rewards import RewardSpec
from alignflow.rewards import TextClassifier, TextClassifierReward, build_reward_function
from alignflow.rewards.text_classifier import FILE
from alignflow.trainers.text_classifier import train_text_classifier

pytest.importorskip("sklearn")

GOOD = ["wonderful", "great", "moving", "brilliant", "loved", "superb", "charming"]
BAD = ["awful", "boring", "terrible", "dull", "hated", "waste", "clumsy"]
NEUTRAL = ["the", "film", "plot", "actor", "scene", "movie", "story", "camera", "was", "and"]


def reviews(n: int, seed: int) -> list[dict]:
    """Constructed reviews: neutral words plus three words of the label's sentiment."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(NEUTRAL, 6) + rng.sample(GOOD if label else BAD, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + " <br /><br />the end", "label": label, "rating": 0, "id": i})
    return rows


def write(path, rows):
    with gzip.open(path, "wt") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def test_saved_and_reloaded_gives_identical_scores_and_no_pickle(tmp_path):
    rows = reviews(200, seed=0)
    model = TextClassifier.fit([r["text"] for r in rows], [r["label"] for r in rows], ["negative", "positive"])
    probe = [r["text"] for r in reviews(50, seed=1)] + ["an unseen word", ""]
    model.save(tmp_path / "judge")
    reloaded = TextClassifier.load(tmp_path / "judge")
    assert np.array_equal(model.logits(probe), reloaded.logits(probe))  # bit for bit, not approximately
    assert [p.name for p in (tmp_path / "judge").iterdir()] == [FILE]
    assert json.loads((tmp_path / "judge" / FILE).read_text())["format"] == "alignflow-text-classifier"
    assert reloaded.accuracy(probe[:50], [r["label"] for r in reviews(50, seed=1)]) == 1.0


def test_the_reward_reads_one_label(tmp_path):
    rows = reviews(100, seed=0)
    TextClassifier.fit([r["text"] for r in rows], [r["label"] for r in rows], ["negative", "positive"]).save(tmp_path)
    prompts = [[{"role": "user", "content": "Continue: the film was"}]] * 2
    responses = ["wonderful and brilliant", "awful and boring"]
    positive = TextClassifierReward(tmp_path, class_label="positive", output="probability")(prompts, responses, {})
    negative = TextClassifierReward(tmp_path, class_label=0, output="probability")(prompts, responses, {})
    assert positive[0] > 0.5 > positive[1]
    assert positive == pytest.approx([1 - n for n in negative])
    assert TextClassifierReward(tmp_path, class_label="positive", output="decision")(prompts, responses, {}) == [1, 0]
    logits = TextClassifierReward(tmp_path, class_label="positive", output="logit")(prompts, responses, {})
    logprobs = TextClassifierReward(tmp_path, class_label="positive", output="logprob")(prompts, responses, {})
    assert logprobs == pytest.approx(np.log(positive).tolist())
    assert logits == pytest.approx([-x for x in TextClassifierReward(tmp_path, class_label="negative",
                                                                     output="logit")(prompts, responses, {})])
    spec = RewardSpec(kind="text_classifier", path=str(tmp_path), class_label="happy")
    with pytest.raises(ConfigError, match=r"rewards\[0\]\.class_label: 'happy' .* 0=negative, 1=positive"):
        build_reward_function(rewards=[spec])


def test_the_judge_job_measures_whole_and_short_texts(tmp_path):
    train = write(tmp_path / "train.jsonl.gz", reviews(200, seed=0))
    test = write(tmp_path / "test.jsonl.gz", reviews(60, seed=2) + [{"text": "", "label": 1}])
    cfg = TextClassifierConfig(output_dir=str(tmp_path / "judge"),
                               data=LabelledDataConfig(train=str(train), test=str(test), probe_words=4))
    folder, metrics = train_text_classifier(cfg)
    assert metrics["train_rows"] == 200 and metrics["test_accuracy"]["n"] == 60
    assert metrics["test_accuracy"]["value"] == 1.0
    assert metrics["test_accuracy"]["low"] < 1.0  # an interval, not a point
    assert metrics["test_accuracy_first4words"]["value"] < 1.0  # four words often hold no sentiment word
    assert TextClassifier.load(folder).metrics["test_accuracy"] == metrics["test_accuracy"]

"""The `classifier` stage on a tiny BERT: it learns constructed labels, saves id2label and its held-out accuracies,
and the folder is a `kind: classifier` reward."""

from __future__ import annotations

import gzip
import json

from alignflow.config.classify import ClassifierConfig, LabelledDataConfig
from alignflow.models import read_metadata
from alignflow.rewards import ClassifierReward
from alignflow.trainers.classifier import cut, linear_schedule, train_classifier

# Words the tiny BERT's word pieces know (tests/tiny_models.py CORPUS).
POSITIVE = "the capital of france is paris"
NEGATIVE = "i cannot help with that request"


def rows(n: int) -> list[dict]:
    return [{"text": POSITIVE if i % 2 else NEGATIVE, "label": i % 2} for i in range(n)]


def test_trains_measures_and_scores(tiny_bert_dir, tmp_path):
    for name, n in (("train", 64), ("test", 20)):
        with gzip.open(tmp_path / f"{name}.jsonl.gz", "wt") as stream:
            stream.writelines(json.dumps(row) + "\n" for row in rows(n))
    cfg = ClassifierConfig(output_dir=str(tmp_path / "proxy"), model=str(tiny_bert_dir), max_length=16,
                           epochs=6, batch_size=8, lr=3e-3, log_every=10,
                           data=LabelledDataConfig(train=str(tmp_path / "train.jsonl.gz"),
                                                   test=str(tmp_path / "test.jsonl.gz"), probe_words=3))
    model_dir, metrics = train_classifier(cfg)
    assert metrics["test_accuracy"]["value"] == 1.0 and metrics["test_accuracy"]["n"] == 20
    assert "test_accuracy_first3words" in metrics
    assert read_metadata(model_dir)["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    reward = ClassifierReward(model_dir, class_label="positive", output="decision")
    assert reward([[]] * 2, [POSITIVE, NEGATIVE], {}) == [1.0, 0.0]


def test_linear_schedule_warms_up_then_decays():
    factors = [linear_schedule(step, total=10, warmup=2) for step in range(10)]
    assert factors[:2] == [0.5, 1.0] and factors[2] == 1.0 and factors[-1] == 0.125
    assert linear_schedule(0, total=5, warmup=0) == 1.0


def test_cut_keeps_the_head_or_the_head_and_the_tail():
    ids = list(range(20))  # 0 = [CLS], 19 = [SEP]
    assert cut(ids, 30, "head") == ids
    assert cut(ids, 8, "head") == [0, 1, 2, 3, 4, 5, 6, 19]
    assert cut(ids, 8, "head_tail") == [0, 1, 14, 15, 16, 17, 18, 19]


def test_freeze_keeps_the_embeddings_and_lower_layers(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    from alignflow.trainers.classifier import freeze_lower_layers

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    freeze_lower_layers(model, 1)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("bert.embeddings.") for n in frozen) and any(".layer.0." in n for n in frozen)
    assert not any(".layer.1." in n or n.startswith("classifier") for n in frozen)

"""The sentiment task's data: {text, label} rows, disjoint proxy/judge halves, prompts of a review's first words."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from alignflow.config.classify import ImdbConfig
from alignflow.config.loader import ConfigError, load_config
from alignflow.config.run import RunConfig, resolve_references, stage_references
from alignflow.data.labelled import clean_text, read_labelled
from alignflow.data.readers import read_prompts
from alignflow.tasks.imdb import LABELS, prepare_imdb

REPO = Path(__file__).resolve().parents[2]


def imdb_fixture(path: Path, n: int = 40) -> Path:
    """IMDB-shaped rows (text, label, rating, id), with two malformed ones."""
    rows = [{"text": f"Review {i}: " + " ".join(f"w{i}_{k}" for k in range(30)) + "<br /><br />The end.",
             "label": i % 2, "rating": 8 if i % 2 else 2, "id": f"{i}_x"} for i in range(n)]
    rows += [{"text": "", "label": 1}, {"text": "a fine film", "label": 5}]
    with gzip.open(path, "wt") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def test_reader_takes_indices_or_names_and_reports_bad_rows(tmp_path):
    source = imdb_fixture(tmp_path / "imdb.jsonl.gz", n=4)
    read = read_labelled(source, LABELS)
    assert [r.label for r in read.examples] == [0, 1, 0, 1]
    assert read.rows_read == 6 and len(read.issues) == 2
    assert "text must be a non-empty string" in read.issues[0].reason and read.issues[0].source.endswith(":5")
    assert "label 5 is neither an index below 2" in read.issues[1].reason
    named = tmp_path / "named.jsonl"
    named.write_text(json.dumps({"text": "great", "label": "positive"}) + "\n")
    assert read_labelled(named, LABELS).examples[0].label == 1
    assert clean_text("a<br /><br />b <BR>c") == "a b c"


def test_prepare_splits_reviews_and_makes_held_out_prompts(tmp_path):
    cfg = ImdbConfig(output_dir=str(tmp_path / "imdb"), source=str(imdb_fixture(tmp_path / "imdb.jsonl.gz")),
                     train_prompts=10, eval_prompts=6, template="Continue this movie review: {start}")
    task = prepare_imdb(cfg)
    out = Path(cfg.output_dir)
    proxy = [json.loads(line) for line in (out / "proxy_train.jsonl").open()]
    judge = [json.loads(line) for line in (out / "judge_train.jsonl").open()]
    assert len(proxy) == len(judge) == 20 and task["skipped"] == 2
    assert not {r["text"] for r in proxy} & {r["text"] for r in judge}  # the judge never shares a review
    assert all("<br" not in r["text"] for r in proxy + judge)
    train_prompts = read_prompts(out / "prompts_train.jsonl").examples
    eval_prompts = read_prompts(out / "prompts_eval.jsonl").examples
    assert (len(train_prompts), len(eval_prompts)) == (10, 6)
    for example in train_prompts + eval_prompts:
        text = example.prompt[0]["content"]
        assert text.startswith("Continue this movie review: Review ")
        assert 8 <= len(text.removeprefix("Continue this movie review: ").split()) <= 16
    starts = lambda rows: {r["text"].split(":")[0] for r in rows}  # noqa: E731 -- "Review i"
    eval_rows = [json.loads(line) for line in (out / "prompts_eval.jsonl").open()]
    assert {r["prompt"].split(": ")[1] for r in eval_rows} <= starts(judge)  # eval prompts: the judge's half
    assert prepare_imdb(cfg) == task  # seeded: the same files again


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="prompt_words must be"):
        ImdbConfig(prompt_words=[16, 8]).validate()
    with pytest.raises(ConfigError, match="template must contain"):
        ImdbConfig(template="Continue:").validate()


def test_sentiment_pipeline_wires_files_of_earlier_stages():
    cfg = load_config(RunConfig, REPO / "configs" / "sentiment.yaml")
    assert ("data.train", "imdb") in stage_references(cfg.grpo)
    resolved = resolve_references(cfg.grpo, {"imdb": "runs/s/imdb", "classifier": "runs/s/classifier/model"})
    assert resolved.data.train == "runs/s/imdb/prompts_train.jsonl"
    assert resolved.rewards[0].path == "runs/s/classifier/model"
    with pytest.raises(ConfigError, match=r"'@imdb' must name a stage listed before"):
        load_config(RunConfig, REPO / "configs" / "sentiment.yaml", ["stages=[classifier]"])

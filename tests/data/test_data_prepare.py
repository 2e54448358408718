"""prepare_dataset writes canonical files that every reader reads back unchanged."""

import json

import pytest

from alignflow.data import DataError, prepare_dataset, read_preferences, read_prompts, read_sft


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_source(examples):
    return sorted(repr({**vars(example), "source": ""}) for example in examples)


@pytest.mark.parametrize(
    ("name", "kind", "read"),
    [
        ("hh_small.jsonl.gz", "preference", read_preferences),
        ("preference.jsonl", "preference", read_preferences),
        ("sft.jsonl", "sft", read_sft),
        ("chat.jsonl", "sft", read_sft),
        ("alpaca.json", "sft", read_sft),
        ("prompts.jsonl", "prompt", read_prompts),
    ],
)
def test_prepare_then_read_back_is_lossless(fixtures, tmp_path, name, kind, read):
    report = prepare_dataset(fixtures / name, tmp_path, val_fraction=0.3, seed=1)
    original = read(fixtures / name)
    assert report.kind == kind
    assert (report.rows_read, report.skipped) == (original.rows_read, len(original.issues))
    train, validation = read(tmp_path / "train.jsonl", strict=True), read(tmp_path / "validation.jsonl", strict=True)
    assert (len(train.examples), len(validation.examples)) == (report.train, report.validation)
    assert validation.examples
    assert without_source(train.examples + validation.examples) == without_source(original.examples)


def test_canonical_rows_and_skipped_file(fixtures, tmp_path):
    prepare_dataset(fixtures / "hh_small.jsonl.gz", tmp_path, val_fraction=0.0)
    assert read_jsonl(tmp_path / "train.jsonl")[0] == {
        "prompt": [{"role": "user", "content": "What is the capital of France?"}],
        "chosen": "Paris.", "rejected": "Lyon, I think.",
    }
    skipped = read_jsonl(tmp_path / "skipped.jsonl")
    assert skipped[0] == {"source": f"{fixtures / 'hh_small.jsonl.gz'}:3",
                          "reason": "chosen response (the final Assistant turn) is empty"}
    assert len(skipped) == 6


def test_prompt_rows_omit_a_missing_reference(fixtures, tmp_path):
    prepare_dataset(fixtures / "prompts.jsonl", tmp_path, val_fraction=0.0)
    rows = read_jsonl(tmp_path / "train.jsonl")
    assert rows[0] == {"prompt": [{"role": "user", "content": "What is the tallest mountain?"}]}
    assert rows[2]["reference"] == "He has 3 - 1 = 2.\n#### 2"


def test_explicit_kind_max_samples_and_strict(fixtures, tmp_path):
    report = prepare_dataset(fixtures / "hh_small.jsonl.gz", tmp_path, kind="prompt", max_samples=2, val_fraction=0.5)
    assert (report.kind, report.train, report.validation) == ("prompt", 1, 1)
    with pytest.raises(DataError, match=r"sft\.jsonl:5: field 'response' is empty"):
        prepare_dataset(fixtures / "sft.jsonl", tmp_path, strict=True)

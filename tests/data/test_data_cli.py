"""``alignflow data prepare`` / ``explore`` through typer's test runner."""

import sys
import types

import pytest
import typer
from typer.testing import CliRunner

from alignflow.cli.data_cmd import data_app

app = typer.Typer()
app.add_typer(data_app, name="data")
runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that rich does not wrap the tables


def test_prepare_writes_files_and_summarises_skipped_rows(fixtures, tmp_path):
    result = runner.invoke(app, ["data", "prepare", str(fixtures / "hh_small.jsonl.gz"), "--out", str(tmp_path),
                                 "--val-fraction", "0.25", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert {path.name for path in tmp_path.iterdir()} == {"train.jsonl", "validation.jsonl", "skipped.jsonl"}
    assert "as preference" in result.output
    assert "chosen is identical to rejected" in result.output
    assert len((tmp_path / "validation.jsonl").read_text().splitlines()) == 1


def test_prepare_strict_fails_with_location_and_reason(fixtures, tmp_path):
    result = runner.invoke(app, ["data", "prepare", str(fixtures / "sft.jsonl"), "-o", str(tmp_path), "--strict"])
    assert result.exit_code == 1
    assert f"{fixtures / 'sft.jsonl'}:5: field 'response' is empty" in result.output


def test_prepare_missing_source_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["data", "prepare", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "no such file or folder" in result.output


def test_explore_prints_counts_and_samples(fixtures):
    result = runner.invoke(app, ["data", "explore", str(fixtures / "chat.jsonl"), "--kind", "sft", "--samples", "1"])
    assert result.exit_code == 0, result.output
    for expected in ("rows read", "good rows", "lengths (characters)", "does not end with an assistant", "Sunny."):
        assert expected in result.output


@pytest.fixture
def fake_models(monkeypatch):
    """Stands in for alignflow.models so the test needs no model files."""
    module = types.ModuleType("alignflow.models")
    monkeypatch.setitem(sys.modules, "alignflow.models", module)
    return module


def test_explore_loads_the_tokenizer_lazily(fixtures, fake_models, plain_tokenizer):
    fake_models.load_tokenizer = lambda name: plain_tokenizer
    result = runner.invoke(app, ["data", "explore", str(fixtures / "prompts.jsonl"), "--tokenizer", "tiny"])
    assert result.exit_code == 0, result.output
    assert "lengths (tokens)" in result.output


def test_explore_reports_a_tokenizer_that_cannot_be_loaded(fixtures, fake_models):
    def load_tokenizer(name):
        raise FileNotFoundError(f"model folder not found: {name}")

    fake_models.load_tokenizer = load_tokenizer
    result = runner.invoke(app, ["data", "explore", str(fixtures / "prompts.jsonl"), "--tokenizer", "nowhere"])
    assert result.exit_code == 1
    assert "cannot load tokenizer 'nowhere'" in result.output

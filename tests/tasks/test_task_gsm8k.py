"""GSM8K: `####` references, worked solutions, prompt files, and the real files when present."""

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from alignflow.cli.data_cmd import data_app
from alignflow.data.readers import read_prompts
from alignflow.data.sources import DataError
from alignflow.tasks.gsm8k import exact_match, gsm8k_answer, gsm8k_solution, read_gsm8k, write_gsm8k
from alignflow.tasks.prompts import PromptFormat

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gsm8k"
SHARED_GSM8K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k"


def test_the_reference_is_the_number_after_the_hashes():
    assert gsm8k_answer("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72") == "72"
    assert gsm8k_answer("...\n#### 1,500") == "1500"
    assert gsm8k_answer("...\n####  -5 ") == "-5"
    with pytest.raises(ValueError, match="no '#### N' final line"):
        gsm8k_answer("It is 5.")
    with pytest.raises(ValueError, match="'many' is not a number"):
        gsm8k_answer("#### many")
    assert gsm8k_solution("Sold 48/2 = <<48/2=24>>24 clips.\n#### 72") == "Sold 48/2 = 24 clips."


def test_read_reports_the_row_without_an_answer():
    problems, issues = read_gsm8k(FIXTURE / "train.jsonl")
    assert [p.answer for p in problems] == ["7", "1500", "-5", "84", "10"]
    assert [(i.source, i.reason) for i in issues] == [(f"{FIXTURE / 'train.jsonl'}:5",
                                                       "answer has no '#### N' final line")]
    with pytest.raises(DataError, match="train.jsonl:5: answer has no"):
        read_gsm8k(FIXTURE / "train.jsonl", strict=True)


def test_exact_match_accepts_raw_answers_and_extracted_references():
    raw = read_prompts(FIXTURE / "test.jsonl").examples  # the whole worked answer is the reference
    assert raw[1].reference.endswith("#### 1,000")
    responses = ["5 + 2 = 7 pets", "So 1,200 - 200 = 1,000. The answer is 1000."]
    assert exact_match([e.prompt for e in raw], responses, {"reference": [e.reference for e in raw]}) == [1.0, 1.0]
    assert exact_match([[]], ["#### 999"], {"reference": ["1000"]}) == [0.0]


def test_written_prompts_carry_references_and_keep_fewshot_out_of_train(tmp_path):
    fmt = PromptFormat(template="Question: {question}", answer_template="{solution}\nThe answer is {answer}.")
    counts = write_gsm8k(FIXTURE, tmp_path, fewshot=2, seed=0, fmt=fmt)
    assert counts == {"train": 3, "test": 2}
    task = json.loads((tmp_path / "task.json").read_text())
    shots = {p["question"] for p in task["fewshot"]}
    assert len(shots) == 2 and len(task["skipped"]) == 1
    train = read_prompts(tmp_path / "train.jsonl", strict=True).examples
    assert not shots & {e.prompt[-1]["content"].removeprefix("Question: ") for e in train}
    test = read_prompts(tmp_path / "test.jsonl", strict=True).examples
    assert [e.reference for e in test] == ["7", "1000"]
    assert test[0].prompt[-1]["content"] == "Question: Ann has 5 cats and 2 dogs. How many pets does she have?"
    assert test[0].prompt[1]["content"].endswith("The answer is " + task["fewshot"][0]["answer"] + ".")
    assert "<<" not in test[0].prompt[1]["content"]


def test_cli_writes_gsm8k(tmp_path):
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    result = CliRunner().invoke(app, ["data", "gsm8k", str(FIXTURE), "--out", str(tmp_path), "--max-train", "2",
                                      "--fewshot", "1", "--fewshot-style", "text"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and len(rows[0]["prompt"]) == 1 and "The answer is" in rows[0]["prompt"][0]["content"]


@pytest.mark.skipif(not SHARED_GSM8K.is_dir(), reason=f"real GSM8K data not found at {SHARED_GSM8K}")
def test_real_gsm8k_files_parse_completely():
    for name, rows in (("train", 7473), ("test", 1319)):
        problems, issues = read_gsm8k(SHARED_GSM8K / f"{name}.jsonl")
        assert (len(problems), issues) == (rows, [])
        assert all(exact_match([[]], [f"The answer is {p.answer}."], {"reference": [p.answer]}) == [1.0]
                   for p in problems)

"""The arithmetic task: the op mix, seeded and disjoint splits, prompt files and the CLI."""

import json
import operator
import random

import pytest
import typer
from typer.testing import CliRunner

from alignflow.cli.data_cmd import data_app
from alignflow.data.readers import read_prompts
from alignflow.tasks.arithmetic import OpSpec, exact_match, generate_splits, make_problem, parse_ops, write_arithmetic
from alignflow.tasks.prompts import Problem, PromptFormat

SIZES = {"test": 50, "fewshot": 3, "train": 200}


def questions(problems):
    return [p.question for p in problems]


def test_parse_ops():
    assert parse_ops("add:1-2, sub:2,mul:1-3,div:1") == [OpSpec("add", 1, 2), OpSpec("sub", 2, 2),
                                                          OpSpec("mul", 1, 3), OpSpec("div", 1, 1)]
    assert str(OpSpec("add", 1, 2)) == "add:1-2" and str(OpSpec("mul", 1, 1)) == "mul:1"
    for bad, message in [("pow:1", "'pow:1' must look like OP:DIGITS"), ("add", "'add' must look like"),
                         ("add:3-1", "1 <= MIN <= MAX <= 18"), ("mul:0", "1 <= MIN")]:
        with pytest.raises(ValueError, match=message):
            parse_ops(bad)


@pytest.mark.parametrize("ops", ["add:1-3", "sub:1-3", "mul:1-2", "div:1-2"])
def test_answers_are_exact_and_digits_in_range(ops):
    spec = parse_ops(ops)[0]
    rng = random.Random(0)
    for _ in range(300):
        problem = make_problem(rng, spec)
        a, symbol, b = problem.question.split()
        exact = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}[symbol](int(a), int(b))
        assert exact == int(problem.answer) and problem.solution == f"{problem.question} = {problem.answer}"
        assert int(problem.answer) >= 0 and problem.source == ops
        operands = (int(problem.answer), int(b)) if symbol == "/" else (int(a), int(b))
        assert all(len(str(x)) <= spec.max_digits for x in operands)


def test_splits_are_deterministic_by_seed_and_disjoint():
    ops = parse_ops("add:1-2,sub:1-2,mul:1")
    first, again = generate_splits(ops, SIZES, seed=7), generate_splits(ops, SIZES, seed=7)
    assert {k: questions(v) for k, v in first.items()} == {k: questions(v) for k, v in again.items()}
    assert questions(generate_splits(ops, SIZES, seed=8)["test"]) != questions(first["test"])
    assert {k: len(v) for k, v in first.items()} == SIZES
    seen = [q for split in first.values() for q in questions(split)]
    assert len(seen) == len(set(seen))  # no problem in two splits (nor twice in one)
    more_train = generate_splits(ops, {**SIZES, "train": 400}, seed=7)
    assert questions(more_train["test"]) == questions(first["test"])  # the test set depends only on its seed


def test_a_mix_too_small_for_the_request_is_an_error():
    with pytest.raises(ValueError, match="could draw only 100 distinct problems from add:1, 120 asked for"):
        generate_splits(parse_ops("add:1"), {"test": 60, "train": 60})


def test_prompt_files_read_back_with_references(tmp_path):
    counts = write_arithmetic(tmp_path, train=30, test=10, ops="add:2,mul:1", seed=3, fewshot=2)
    assert counts == {"train": 30, "test": 10}
    task = json.loads((tmp_path / "task.json").read_text())
    shots = [p["question"] for p in task["fewshot"]]
    assert task["ops"] == "add:2,mul:1" and len(shots) == 2
    read = {name: read_prompts(tmp_path / f"{name}.jsonl", strict=True).examples for name in ("train", "test")}
    rows = {name: [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
            for name in ("train", "test")}
    for name in ("train", "test"):
        for example, row in zip(read[name], rows[name]):
            assert example.reference == row["reference"] and row["question"] not in shots
            assert [m["role"] for m in example.prompt] == ["user", "assistant", "user", "assistant", "user"]
            assert example.prompt[-1]["content"] == f"What is {row['question']}?"
            answer = f"The answer is {row['reference']}."
            assert exact_match([example.prompt], [answer], {"reference": [row["reference"]]}) == [1.0]
    assert not {r["question"] for r in rows["train"]} & {r["question"] for r in rows["test"]}


def test_prompt_format_template_system_and_text_fewshot():
    fmt = PromptFormat(template="Compute \\boxed{{question}}", system="Be brief.", fewshot_style="text",
                       answer_template="{answer}")
    shot, problem = Problem("1 + 1", "2"), Problem("2 + 2", "4")
    user = "Compute \\boxed{1 + 1}\n2\n\nCompute \\boxed{2 + 2}"
    system = {"role": "system", "content": "Be brief."}
    assert fmt.messages(problem, [shot]) == [system, {"role": "user", "content": user}]
    with pytest.raises(ValueError, match="must contain {question}"):
        PromptFormat(template="What is it?")


def test_cli_writes_the_task(tmp_path):
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    result = CliRunner().invoke(app, ["data", "arithmetic", "--out", str(tmp_path), "--train", "20", "--test", "5",
                                      "--seed", "1", "--ops", "add:1-2", "--template", "Q: {question}\\nA:"])
    assert result.exit_code == 0, result.output
    assert "20 prompts" in result.output
    row = json.loads((tmp_path / "test.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == [{"role": "user", "content": f"Q: {row['question']}\nA:"}]
    result = CliRunner().invoke(app, ["data", "arithmetic", "--out", str(tmp_path), "--ops", "add:1", "--train", "200"])
    assert result.exit_code == 1 and "could draw only 100 distinct problems" in result.output

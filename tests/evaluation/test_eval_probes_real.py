"""The probe loaders on the real shared data (outside the repo; skipped when absent)."""

from pathlib import Path

import pytest

from alignflow.evaluation.probes import load_red_team_prompts, load_truthfulqa, load_xstest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (it lives outside the repo)")
    return path


def test_red_team_prompts():
    prompts = load_red_team_prompts(shared("red-team-prompts"))
    assert len(prompts) == 400 + 520 + 313 and all(p.unsafe for p in prompts)
    contextual = [p for p in prompts if "\n\n---\n\n" in p.prompt]
    assert contextual and all(p.source.split("/")[-1].startswith("harmbench") for p in contextual)


def test_xstest():
    prompts = load_xstest(shared("xstest/xstest_prompts.csv"))
    assert len(prompts) == 450 and sum(p.unsafe for p in prompts) == 200


def test_truthfulqa():
    questions = load_truthfulqa(shared("truthfulqa/TruthfulQA.csv"))
    assert len(questions) == 817 and all(q.correct == 0 and len(q.choices) >= 2 for q in questions)

"""``bench/run.py``'s phase table: where an alignflow RL step goes, as medians over the repeats."""

from __future__ import annotations

import importlib.util
from pathlib import Path

RUN_PY = Path(__file__).resolve().parents[2] / "bench" / "run.py"
spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)


def repeat(step: float, generate: float, actor: float) -> dict:
    return {"phases": {"time/step_s": step, "time/generate_s": generate, "time/actor_update_s": actor}}


def test_other_is_each_runs_rest_before_the_median():
    # Medians of each column come from different runs: 5.0 - 3.0 - 3.0 would be -1.0 s.
    runs = [repeat(4.0, 1.0, 2.5), repeat(5.0, 3.0, 1.0), repeat(7.0, 3.5, 3.0)]
    phases = run.median_phases(runs)
    assert phases["time/step_s"] == 5.0 and phases["time/generate_s"] == 3.0
    assert phases["time/actor_update_s"] == 2.5
    assert phases["other"] == 0.5  # the runs' rests: 0.5, 1.0, 0.5


def test_runs_without_phases_have_none_and_are_left_out():
    assert run.median_phases([{"phases": {}}, {}]) == {}
    assert run.median_phases([{}, repeat(3.0, 1.0, 1.0)])["other"] == 1.0


def test_the_table_shows_a_missing_phase_as_a_dash():
    ppo = {"phases": {**repeat(6.0, 2.0, 2.0)["phases"], "time/values_s": 1.0}}
    summary = {("grpo", "alignflow", "default"): {"phases": run.median_phases([repeat(4.0, 2.0, 1.0)])},
               ("ppo", "alignflow", "default"): {"phases": run.median_phases([ppo])}}
    table = "\n".join(run.phase_table(summary, ["grpo", "ppo"]))
    assert "| grpo | default | 4.00 | 2.00 (50%) | – |" in table and "| 1.00 (25%) | 1.00 (25%) |" in table

"""The diamond: N steps straight against the same run killed with SIGKILL (twice for the offline
trainers, once inside a checkpoint write) and resumed. Weights must be bit-identical and the
resumed ``metrics.jsonl`` must read as the straight run's (clock readings aside)."""

import json

import pytest
from reliability_support import TALLY, assert_same_weights, logged_rows, random_for, volatile


def kill_points(job) -> list[str]:
    """A kill inside a checkpoint write, then one right after the metrics row of a step past that
    checkpoint (so the last run resumes from it). Checkpoints come every 2 steps."""
    rng = random_for(job.name)
    if job.name in ("grpo", "ppo"):  # the RL controller writes its own checkpoints: kill after a step
        return [f"log:train:{rng.randint(3, job.steps - 1)}"]
    first = rng.choice(["checkpoint:2", "checkpoint:4", "state:trainer_state.pt"])  # the last: at step 2
    written = int(first.split(":")[1]) if first.startswith("checkpoint") else 2
    return [first, f"log:train:{rng.randint(written + 1, job.steps)}"]


def summary_values(out):
    summary = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in summary.items() if not volatile(k)}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["sft", "rm", "dpo", "grpo", "ppo"])
def test_killed_and_resumed_run_equals_the_straight_run(name, jobs, cli, cli_inline, tmp_path):
    job = jobs[name]
    config = job.write(tmp_path)
    straight = cli_inline(job, config, tmp_path / "straight")
    assert straight.returncode == 0, straight.output
    out = tmp_path / "killed"
    points = kill_points(job)
    for point in points:
        killed = cli(job, config, out, kill_at=point)
        assert killed.killed, f"{point} never came: rc={killed.returncode}\n{killed.output[-3000:]}"
    resumed = cli(job, config, out)
    assert resumed.returncode == 0, resumed.output
    assert "resuming" in resumed.output
    assert_same_weights(tmp_path / "straight", out)
    TALLY["kills survived, bit-identical"][name] += len(points)
    assert logged_rows(out) == logged_rows(tmp_path / "straight"), f"kill points {points}"
    assert summary_values(out) == summary_values(tmp_path / "straight")
    skipped = tmp_path / "straight" / "skipped_rows.jsonl"
    if skipped.is_file():
        assert (out / "skipped_rows.jsonl").read_text() == skipped.read_text()

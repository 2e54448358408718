"""The RL job keeps the offline trainers' guarantees: resume refuses a changed config, and a run
whose updates are all skipped stops naming the last good checkpoint."""

import pytest
from reliability_support import non_finite_checkpoints


@pytest.mark.timeout(120)
def test_grpo_resume_with_another_lr_is_refused(jobs, cli_inline, tmp_path):
    job = jobs["grpo"]
    config, out = job.write(tmp_path), tmp_path / "run"
    assert cli_inline(job, config, out, "train.steps=2").returncode == 0
    refused = cli_inline(job, config, out, "train.actor_lr=0.01")
    assert refused.returncode == 2, refused.output[-2000:]
    assert "train.actor_lr: 0.001 -> 0.01" in refused.text and "resume=false" in refused.text


@pytest.mark.timeout(120)
def test_grpo_whose_updates_are_all_skipped_stops(jobs, cli_inline, tmp_path):
    job = jobs["grpo"]
    out = tmp_path / "run"
    outcome = cli_inline(job, job.write(tmp_path), out, "train.actor_lr=1e30", "train.max_skipped_updates=2",
                         "train.steps=8")
    assert outcome.returncode == 2, outcome.output[-2000:]
    assert "train.max_skipped_updates" in outcome.text and "last good checkpoint" in outcome.text
    assert not non_finite_checkpoints(out)

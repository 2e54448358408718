"""NaN injection: a diverging run stops with one red line that names the last good checkpoint, and
no checkpoint it leaves holds a non-finite weight (so resuming never starts from poison)."""

import pytest
from reliability_support import TALLY, non_finite_checkpoints


def assert_stopped_clean(outcome, out, job_name: str) -> None:
    assert outcome.returncode == 2, outcome.output[-3000:]
    assert "Traceback" not in outcome.output
    assert "last good checkpoint" in outcome.text, outcome.output[-2000:]
    assert not non_finite_checkpoints(out)
    TALLY["NaN injections stopped, finite last checkpoint"][job_name] += 1


@pytest.mark.timeout(300)
def test_sft_at_a_huge_lr_stops_clean_and_the_advised_rerun_starts_afresh(jobs, cli, cli_inline, tmp_path):
    job = jobs["sft"]
    config, out = job.write(tmp_path), tmp_path / "run"
    diverged = cli(job, config, out, "train.lr=1e6")
    assert_stopped_clean(diverged, out, "sft (huge lr)")
    assert "model.dtype=fp32" not in diverged.text  # the run is fp32 already
    # The advice: a lower lr. Resuming the diverged checkpoint under it silently is refused ...
    refused = cli_inline(job, config, out)
    assert refused.returncode == 2 and "train.lr: 1000000.0 -> 0.003" in refused.text, refused.output[-2000:]
    # ... and the fresh start it offers trains to the end.
    assert cli_inline(job, config, out, "resume=false").returncode == 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["rm", "dpo"])
def test_pair_trainers_at_a_huge_lr_stop_clean(name, jobs, cli_inline, tmp_path):
    job = jobs[name]
    out = tmp_path / "run"
    assert_stopped_clean(cli_inline(job, job.write(tmp_path), out, "train.lr=1e6"), out, f"{name} (huge lr)")


@pytest.mark.timeout(300)
def test_grpo_with_rewards_turning_nan_stops_clean(jobs, cli, tmp_path):
    job = jobs["grpo"]
    out = tmp_path / "run"
    outcome = cli(job, job.write(tmp_path), out, "reward_function=reliability_rewards:late_nan_reward",
                  "train.eval_every=0")
    assert (out / "checkpoints" / "step-000002").is_dir(), outcome.output[-2000:]
    assert_stopped_clean(outcome, out, "grpo (NaN rewards)")

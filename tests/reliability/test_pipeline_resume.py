"""``alignflow run`` killed in each of its stages in turn, then finished: every stage's model and
log equal those of an uninterrupted pipeline, and a rerun of the finished pipeline changes nothing.

Stage lengths differ (sft 4, rm 6, dpo 8 steps, checkpoints every 2), so the kill point
``log:train:3`` can only fire in sft, ``log:train:5`` in rm and ``log:train:7`` in dpo."""

import json

import pytest
from reliability_support import TALLY, Job, assert_same_weights, logged_rows, volatile

STAGES = {"sft": 4, "rm": 6, "dpo": 8}


def pipeline_job(jobs) -> Job:
    sections = {}
    for stage, steps in STAGES.items():
        section = json.loads(json.dumps(jobs[stage].config))
        section["train"].update(max_steps=steps, eval_every=steps // 2)
        if stage != "sft":
            section["model"]["name"] = "@sft"
        sections[stage] = section
    return Job("run", ["run"], {"stages": list(STAGES), **sections}, sum(STAGES.values()))


def stage_metrics(out, stage):
    record = json.loads((out / stage / "stage_done.json").read_text())
    return {k: v for k, v in record["metrics"].items() if not volatile(k)}


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.timeout(300)
def test_a_pipeline_killed_in_each_stage_resumes_to_the_straight_result(jobs, cli, cli_inline, tmp_path):
    job = pipeline_job(jobs)
    config = job.write(tmp_path)
    straight, out = tmp_path / "straight", tmp_path / "killed"
    assert cli_inline(job, config, straight).returncode == 0
    for stage, point in zip(STAGES, ["log:train:3", "log:train:5", "log:train:7"]):
        killed = cli(job, config, out, kill_at=point)
        assert killed.killed, f"{point} never came: rc={killed.returncode}\n{killed.output[-3000:]}"
        assert not (out / stage / "stage_done.json").exists()
    finished = cli(job, config, out)
    assert finished.returncode == 0, finished.output[-3000:]
    for stage in STAGES:
        assert_same_weights(straight / stage, out / stage)
        assert logged_rows(out / stage) == logged_rows(straight / stage), stage
        assert stage_metrics(out, stage) == stage_metrics(straight, stage)
        TALLY["kills survived, bit-identical"][f"run/{stage}"] += 1
    before = snapshot(out)
    again = cli_inline(job, config, out)
    assert again.returncode == 0 and again.text.count("already done") == len(STAGES)
    after = snapshot(out)
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == set()


def test_finished_offline_jobs_rerun_without_changing_a_file(jobs, cli_inline, tmp_path):
    for name in ("rm", "dpo"):
        job, out = jobs[name], tmp_path / name
        config = job.write(tmp_path, train={**job.config["train"], "max_steps": 2})
        assert cli_inline(job, config, out).returncode == 0
        before = snapshot(out)
        again = cli_inline(job, config, out)
        assert again.returncode == 0 and "already done" in again.text
        assert snapshot(out) == before, name

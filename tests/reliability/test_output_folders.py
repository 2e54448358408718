"""Output folders that cannot be used: one red line naming the folder, before any work, and the
folder of another run left exactly as it was."""

import pytest
from reliability_support import random_for


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_an_unwritable_output_folder_is_one_red_line(where, jobs, cli_inline, tmp_path):
    job = jobs[random_for(where).choice(["sft", "rm", "dpo"])]
    blocker = tmp_path / "taken.txt"
    blocker.write_text("not a folder")
    out = blocker / "run" if where == "under_a_file" else blocker
    outcome = cli_inline(job, job.write(tmp_path), out)
    assert outcome.returncode == 2, outcome.output[-2000:]
    assert "Traceback" not in outcome.output and str(out) in outcome.text
    assert blocker.read_text() == "not a folder"


@pytest.mark.timeout(120)
def test_another_job_into_a_run_folder_is_refused_and_changes_nothing(jobs, cli_inline, tmp_path):
    out = tmp_path / "run"
    assert cli_inline(jobs["sft"], jobs["sft"].write(tmp_path), out, "train.max_steps=2").returncode == 0
    before = snapshot(out)
    clash = cli_inline(jobs["dpo"], jobs["dpo"].write(tmp_path), out)
    assert clash.returncode == 2, clash.output[-2000:]
    assert "cannot be resumed" in clash.text and "data.train" in clash.text and "resume=false" in clash.text
    assert snapshot(out) == before

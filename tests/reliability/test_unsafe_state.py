"""State files in an output folder are data, never code: a pickled callable is refused before it
runs, and a damaged newest checkpoint is named along with the previous complete one."""

import pickle
from pathlib import Path

import pytest
import torch


class RunsACommand:
    """Unpickling this calls ``Path.touch(marker)``: a stand-in for any shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant_bombs(ckpt: Path, marker: Path) -> list[Path]:
    """Replace every ``.pt`` state file of a checkpoint with a pickled callable."""
    files = sorted(ckpt.rglob("*.pt"))
    for path in files:
        torch.save({"step": 1, "payload": RunsACommand(marker)}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return files


@pytest.mark.timeout(300)
def test_offline_resume_refuses_a_pickled_callable_and_names_a_damaged_checkpoint(jobs, cli_inline, tmp_path):
    job = jobs["sft"]
    config, out, marker = job.write(tmp_path), tmp_path / "run", tmp_path / "PWNED"
    assert cli_inline(job, config, out, "train.max_steps=4").returncode == 0
    newest, previous = out / "checkpoints" / "step-000004", out / "checkpoints" / "step-000002"
    state = newest / "trainer_state.pt"
    kept = state.read_bytes()
    plant_bombs(newest, marker)
    refused = cli_inline(job, config, out, "train.max_steps=6")
    assert refused.returncode == 2 and "Traceback" not in refused.output, refused.output[-3000:]
    assert not marker.exists(), "the pickled callable ran on resume"
    assert f"{state}: refused to load" in refused.text and str(previous) in refused.text
    state.write_bytes(kept[: len(kept) // 3])  # a torn write
    damaged = cli_inline(job, config, out, "train.max_steps=6")
    assert damaged.returncode == 2
    assert f"{state} is corrupt or truncated" in damaged.text and f"previous complete checkpoint is {previous}" \
        in damaged.text
    # The advice works: without the damaged checkpoint the run resumes from the previous one.
    for path in sorted(newest.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    newest.rmdir()
    resumed = cli_inline(job, config, out, "train.max_steps=6")
    assert resumed.returncode == 0 and f"resuming from {previous}" in resumed.text


@pytest.mark.timeout(300)
def test_rl_resume_refuses_pickled_callables(jobs, cli_inline, tmp_path):
    job = jobs["grpo"]
    config, out, marker = job.write(tmp_path), tmp_path / "run", tmp_path / "PWNED"
    assert cli_inline(job, config, out, "train.steps=2").returncode == 0
    assert plant_bombs(out / "checkpoints" / "step-000002", marker)
    refused = cli_inline(job, config, out)
    assert not marker.exists(), "the pickled callable ran on resume"
    assert refused.returncode == 2 and "refused to load" in refused.text, refused.output[-3000:]

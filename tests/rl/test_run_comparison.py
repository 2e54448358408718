"""`alignflow curves`: several runs' curves in one figure."""

import json

from typer.testing import CliRunner

from alignflow.cli.main import app


def write_run(folder, scale):
    folder.mkdir()
    rows = [{"step": s, "split": "train", "reward/raw_mean": scale * s, "kl/ref": 0.1 * s, "policy/entropy": 1.0,
             "response/length_mean": 10 + s} for s in range(1, 6)]
    rows += [{"step": s, "split": "eval", "reward_mean": scale * s, "kl": 0.1 * s, "length_mean": 10.0}
             for s in (0, 5)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_curves_overlay_runs_and_name_missing_metrics(tmp_path):
    grpo, rloo = write_run(tmp_path / "grpo", 1.0), write_run(tmp_path / "rloo", 0.5)
    out = tmp_path / "cmp.png"
    result = CliRunner().invoke(app, ["curves", str(grpo), str(rloo), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    result = CliRunner().invoke(app, ["curves", str(grpo), str(tmp_path / "nope"), "--out", str(out)])
    assert result.exit_code == 2 and "nope" in result.output

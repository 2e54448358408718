"""``bench/run.py --resume``: a stopped run continues in its folder, only with the same work."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parents[2] / "bench" / "run.py"
spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)

HEADER = {"workload": "smollm2 on hh.jsonl.gz, 2 threads per process, 2 warm-up step(s), 3 of 5 repeat(s); sizes: "
                      "sft batch 8, 2 steps", "variants": "sft: alignflow default,compile vs trl default,bf16",
          "native bf16": "yes", "data order": "one shared shuffle (seed 0)", "command": "`python bench/run.py`"}


def stopped(tmp_path: Path, results: list[dict]) -> Path:
    (tmp_path / "results.json").write_text(json.dumps({"header": HEADER, "peaks": [{"when": "start"}]}))
    (tmp_path / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    return tmp_path


def test_a_stopped_run_gives_back_its_header_peaks_and_every_measured_run(tmp_path):
    runs = [{"case": "sft", "framework": "trl", "variant": "bf16", "repeat": r} for r in (1, 2, 3, 4)]
    earlier = run.stopped_run(stopped(tmp_path, runs))
    assert earlier["header"] == HEADER and earlier["peaks"] == [{"when": "start"}]
    assert earlier["results"] == runs  # a repeat cut short keeps the runs it finished


def test_a_folder_without_a_finished_repeat_is_refused(tmp_path):
    (tmp_path / "raw.jsonl").write_text("")
    with pytest.raises(SystemExit, match=f"--resume {tmp_path}: no results.json"):
        run.stopped_run(tmp_path)


def test_resuming_takes_the_same_work_under_any_repeat_count():
    now = {**HEADER, "workload": HEADER["workload"].replace("3 of 5", "0 of 5")}
    run.check_resumable(Path("out/x"), HEADER, now)


def test_resuming_with_other_variants_names_what_differs():
    now = {**HEADER, "variants": "sft: alignflow default vs trl default,bf16"}
    expected = (r"(?s)--resume out/x: these flags.*variants:\n    stopped run: sft: alignflow default,compile vs "
                r"trl default,bf16\n    now:         sft: alignflow default vs")
    with pytest.raises(SystemExit, match=expected):
        run.check_resumable(Path("out/x"), HEADER, now)

"""`alignflow run` / `alignflow sweep` on tiny models: stage wiring, skipping finished stages, shared stages."""

import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from alignflow.config import ConfigError, load_config
from alignflow.config.run import RunConfig, resolve_references, stage_references
from alignflow.trainers import pipeline
from alignflow.trainers.pipeline import STAGE_DONE, run_pipeline
from alignflow.trainers.sweep import grid_points, parse_grid, point_name, run_sweep

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainers"))
from trainer_data import QUESTIONS, write_jsonl  # noqa: E402

TINY_TRAIN = ["model.dtype=fp32", "data.max_length=48", "data.max_prompt_length=24", "data.val_fraction=0.25",
              "train.batch_size=4", "train.micro_batch_size=4", "train.grad_accum=1", "train.max_steps=2",
              "train.eval_every=2"]


def write_config(path: Path, model: Path, pairs: Path, sft: Path, stages: list[str]) -> Path:
    import yaml

    def job(extra):
        section = {}
        for item in TINY_TRAIN:
            key, value = item.split("=", 1)
            node = section
            for part in key.split(".")[:-1]:
                node = node.setdefault(part, {})
            node[key.split(".")[-1]] = yaml.safe_load(value)
        section.update(extra)
        return section

    cfg = {
        "output_dir": str(path.parent / "run"),
        "stages": stages,
        "sft": job({"model": {"name": str(model), "dtype": "fp32"}, "data": {**job({})["data"], "train": str(sft)}}),
        "rm": job({"model": {"name": "@sft", "dtype": "fp32"}, "data": {**job({})["data"], "train": str(pairs)}}),
        "dpo": job({"model": {"name": "@sft", "dtype": "fp32"}, "data": {**job({})["data"], "train": str(pairs)}}),
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def data_files(tmp_path):
    sft = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": q, "response": "Paris."} for q in QUESTIONS] * 2)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": q, "chosen": "Sure, four.", "rejected": "No."}
                                                  for q in QUESTIONS] * 2)
    return sft, pairs


def test_references_resolve_to_earlier_stage_outputs(tmp_path, tiny_llama_dir, data_files):
    sft, pairs = data_files
    path = write_config(tmp_path / "run.yaml", tiny_llama_dir, pairs, sft, ["sft", "rm", "dpo"])
    cfg = load_config(RunConfig, path)
    assert stage_references(cfg.dpo) == [("model.name", "sft")]
    resolved = resolve_references(cfg.dpo, {"sft": "/x/sft/model"})
    assert resolved.model.name == "/x/sft/model" and cfg.dpo.model.name == "@sft"


def test_a_file_reference_is_in_the_stages_folder_not_its_model_folder():
    section = {"model": "@ppo", "prompts": "@ppo/validation.jsonl"}
    resolved = resolve_references(section, {"ppo": "/x/ppo/model"}, {"ppo": "/x/ppo"})
    assert resolved == {"model": "/x/ppo/model", "prompts": "/x/ppo/validation.jsonl"}


def test_reference_to_a_later_or_missing_stage_is_a_config_error(tmp_path, tiny_llama_dir, data_files):
    sft, pairs = data_files
    path = write_config(tmp_path / "run.yaml", tiny_llama_dir, pairs, sft, ["rm", "sft"])
    with pytest.raises(ConfigError, match=r"rm\.model\.name: '@sft' must name a stage listed before"):
        load_config(RunConfig, path)
    with pytest.raises(ConfigError, match="no ppo: section"):
        load_config(RunConfig, path, ["stages=[sft, ppo]"])
    with pytest.raises(ConfigError, match="unknown stage 'spt'"):
        load_config(RunConfig, path, ["stages=[spt]"])


def test_pipeline_runs_stages_in_order_and_skips_finished_ones(tmp_path, tiny_llama_dir, data_files, monkeypatch):
    sft, pairs = data_files
    path = write_config(tmp_path / "run.yaml", tiny_llama_dir, pairs, sft, ["sft", "rm", "dpo"])
    cfg = load_config(RunConfig, path)
    records = run_pipeline(cfg, Console(quiet=True))
    run_dir = Path(cfg.output_dir)
    assert records["sft"]["output"] == str(run_dir / "sft" / "model")
    assert Path(records["rm"]["output"]).parent == run_dir / "rm"
    dpo_config = json.loads(json.dumps(load_config(RunConfig, path).dpo.model.name))
    assert dpo_config == "@sft"  # the YAML keeps the reference; the stage ran on the resolved path:
    assert (run_dir / "dpo" / "config.yaml").read_text().count(str(run_dir / "sft" / "model")) >= 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert list(summary["stages"]) == ["sft", "rm", "dpo"]

    # A second run redoes nothing; deleting one stage's marker redoes just that stage.
    calls = []
    real = pipeline.run_stage
    monkeypatch.setattr(pipeline, "run_stage", lambda kind, section, console: calls.append(kind) or real(
        kind, section, console))
    run_pipeline(cfg, Console(quiet=True))
    assert calls == []
    (run_dir / "dpo" / STAGE_DONE).unlink()
    run_pipeline(cfg, Console(quiet=True))
    assert calls == ["dpo"]
    # A finished stage whose config changed is an error naming it, not a silent reuse.
    changed = load_config(RunConfig, path, ["dpo.loss.beta=0.3"])
    with pytest.raises(ValueError, match=r"stage dpo: .*dpo holds a finished run of a different dpo config"):
        run_pipeline(changed, Console(quiet=True))


def test_grid_parsing_and_point_names():
    axes = parse_grid(["dpo.loss.beta=0.1,0.5", "dpo.train.lr=1e-4"])
    assert axes == [("dpo.loss.beta", ["0.1", "0.5"]), ("dpo.train.lr", ["1e-4"])]
    points = grid_points(axes)
    assert points == [{"dpo.loss.beta": "0.1", "dpo.train.lr": "1e-4"},
                      {"dpo.loss.beta": "0.5", "dpo.train.lr": "1e-4"}]
    assert point_name(points[0]) == "beta=0.1,lr=1e-4"
    with pytest.raises(ConfigError):
        parse_grid(["dpo.loss.beta="])


def test_sweep_shares_identical_stages_and_writes_one_comparison(tmp_path, tiny_llama_dir, data_files, monkeypatch):
    sft, pairs = data_files
    path = write_config(tmp_path / "run.yaml", tiny_llama_dir, pairs, sft, ["sft", "dpo"])
    calls = []
    real = pipeline.run_stage
    monkeypatch.setattr(pipeline, "run_stage", lambda kind, section, console: calls.append(kind) or real(
        kind, section, console))
    rows = run_sweep(path, ["dpo.loss.beta=0.1,0.5"], console=Console(quiet=True))
    assert calls == ["sft", "dpo", "dpo"]  # SFT is the same at both points: trained once
    assert [row["point"] for row in rows] == [{"dpo.loss.beta": "0.1"}, {"dpo.loss.beta": "0.5"}]
    sweep_dir = tmp_path / "run"
    report = (sweep_dir / "sweep_report.html").read_text()
    assert "beta" in report and "dpo/" in report
    assert len(json.loads((sweep_dir / "sweep.json").read_text())) == 2
    with pytest.raises(ConfigError):  # every point is validated before anything runs
        run_sweep(path, ["dpo.loss.beta=0.1,-1"], console=Console(quiet=True))

"""Model folders are checked when resolved: a truncated weights file or a mistyped relative path is
named at once, on every load path (not only the command line's checks)."""

import shutil

import pytest

from alignflow.config.schema import ModelConfig
from alignflow.models import ModelNotFoundError, load_policy, resolve_model
from alignflow.models.registry import is_local_path, safetensors_problem


@pytest.fixture
def truncated(tiny_llama_dir, tmp_path):
    folder = tmp_path / "truncated"
    shutil.copytree(tiny_llama_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    return folder


def test_a_whole_safetensors_file_has_no_problem(tiny_llama_dir):
    assert safetensors_problem(tiny_llama_dir / "model.safetensors") is None


def test_truncated_and_foreign_files_are_told_apart(tmp_path, truncated):
    assert "is truncated" in safetensors_problem(truncated / "model.safetensors")
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x10\x00")
    assert "is truncated" in safetensors_problem(short)
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes((4).to_bytes(8, "little") + b"oops" + b"\x00" * 16)
    assert "is not a safetensors file" in safetensors_problem(foreign)


def test_loading_a_truncated_folder_names_the_file(truncated):
    with pytest.raises(ModelNotFoundError, match=rf"{truncated / 'model.safetensors'} is truncated .*copy the model"):
        load_policy(ModelConfig(name=str(truncated), dtype="fp32"))


def test_a_relative_path_under_an_existing_folder_is_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert is_local_path("models/nope") and is_local_path("./nope") and is_local_path("runs/sft/model")
    assert not is_local_path("HuggingFaceTB/SmolLM2-135M") and not is_local_path("gpt2")
    with pytest.raises(ModelNotFoundError, match="model folder not found: models/nope"):
        resolve_model("models/nope")
    assert resolve_model("someone/model").path == "someone/model"  # a hub id, tried when loaded

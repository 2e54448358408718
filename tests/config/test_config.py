from pathlib import Path

import pytest

from alignflow.config import ConfigError, RewardConfig, SFTConfig, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides_build_typed_config(tmp_path):
    path = write(tmp_path, "data:\n  train: x.jsonl\ntrain:\n  lr: 1e-5\n  batch_size: 8\n  micro_batch_size: 4\n")
    cfg = load_config(SFTConfig, path, ["train.grad_accum=2", "model.lora.enabled=true", "train.epochs=2"])
    assert cfg.train.lr == pytest.approx(1e-5) and isinstance(cfg.train.lr, float)
    assert cfg.train.grad_accum == 2 and cfg.model.lora.enabled is True
    assert cfg.train.epochs == 2.0 and isinstance(cfg.train.epochs, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "unknown key 'train.lrr'"),
        ("train.batch_size=abc", "train.batch_size must be of type int"),
        ("train.grad_accum=3", "train.batch_size (16) must equal train.micro_batch_size (8) x train.grad_accum (3)"),
        ("model.dtype=fp16", "model.dtype must be one of"),
        ("model.lora.enabled=maybe", "model.lora.enabled must be true or false"),
        ("data.max_prompt_length=900", "data.max_prompt_length (900) must be below data.max_length (512)"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path, override, message):
    path = write(tmp_path, "data:\n  train: x.jsonl\n")
    with pytest.raises(ConfigError) as err:
        load_config(SFTConfig, path, [override])
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_dataset_and_missing_file_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.train must name a dataset"):
        load_config(RewardConfig, write(tmp_path, "train:\n  lr: 1.0e-4\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(RewardConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(RewardConfig, write(tmp_path, "data: {train: x}\n"), ["train.lr"])


def test_shipped_configs_load(tmp_path):
    configs = Path(__file__).resolve().parents[2] / "configs"
    for name, cls in [("sft.yaml", SFTConfig), ("rm.yaml", RewardConfig)]:
        cfg = load_config(cls, configs / name)
        assert cfg.data.train

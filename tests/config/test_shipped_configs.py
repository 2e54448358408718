"""Every config shipped in configs/ loads and validates as the job that reads it."""

from pathlib import Path

import pytest

from alignflow.config import RewardConfig, SFTConfig, load_config
from alignflow.config.dpo import DPOConfig
from alignflow.config.eval import EvalConfig
from alignflow.config.rl import RLConfig
from alignflow.config.run import RunConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
JOBS = {"sft": SFTConfig, "rm": RewardConfig, "dpo": DPOConfig, "ppo": RLConfig, "ppo_hh": RLConfig,
        "grpo_arithmetic": RLConfig, "eval": EvalConfig, "quickstart": RunConfig, "full": RunConfig,
        "prototype": RunConfig, "sentiment": RunConfig, "tldr": RunConfig}


def test_every_shipped_config_is_listed():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == set(JOBS)


@pytest.mark.parametrize("name", sorted(JOBS))
def test_shipped_config_loads(name):
    cfg = load_config(JOBS[name], CONFIGS / f"{name}.yaml")
    assert cfg.output_dir

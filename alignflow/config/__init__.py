"""Typed configs: dataclass schemas plus a YAML loader with command-line overrides."""

from alignflow.config.dpo import DPOConfig, DPOLossConfig
from alignflow.config.loader import ConfigError, dump_config, load_config, to_dict
from alignflow.config.schema import (
    DataConfig,
    LoraConfig,
    ModelConfig,
    RewardConfig,
    RewardLossConfig,
    RewardTrainConfig,
    SFTConfig,
    TrainConfig,
)

__all__ = [
    "ConfigError", "dump_config", "load_config", "to_dict", "DPOConfig", "DPOLossConfig",
    "DataConfig", "LoraConfig", "ModelConfig", "RewardConfig", "RewardLossConfig", "RewardTrainConfig",
    "SFTConfig", "TrainConfig",
]

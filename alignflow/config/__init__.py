"""Typed configs: dataclass schemas plus a YAML loader with command-line overrides."""

import importlib

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

# Imported when first used: the DPO config reads the loss registry, which loads torch, and commands
# such as `alignflow data prepare` import this package without needing either.
_LAZY = {"DPOConfig": "alignflow.config.dpo", "DPOLossConfig": "alignflow.config.dpo"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfigError", "dump_config", "load_config", "to_dict", "DPOConfig", "DPOLossConfig",
    "DataConfig", "LoraConfig", "ModelConfig", "RewardConfig", "RewardLossConfig", "RewardTrainConfig",
    "SFTConfig", "TrainConfig",
]

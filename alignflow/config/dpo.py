"""The offline DPO job config (DPO, IPO and cDPO on preference pairs).

The model, data and optimisation sections are the SFT / reward-model ones; ``loss`` picks the
objective and how the reference policy is held. DPO wants a much smaller learning rate than SFT
(5e-7 .. 1e-6 for a full fine-tune is typical), so set ``train.lr`` in the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alignflow.algorithms.preference import DPO_LOSSES
from alignflow.config.distributed import DistributedConfig
from alignflow.config.loader import ConfigError
from alignflow.config.schema import CausalLMDataConfig, ModelConfig, TrainConfig, check_data_parallel


@dataclass
class DPOLossConfig:
    type: str = "sigmoid"  # any name in DPO_LOSSES: sigmoid (DPO), ipo, cdpo
    beta: float = 0.1  # strength of the implicit KL to the reference; smaller lets the policy move further
    label_smoothing: float = 0.0  # cdpo only: assumed probability that a preference label is flipped, [0, 0.5)
    # cached: the starting policy's log-probs of every pair, computed once before training (no second
    # model in memory; saved in the run folder, so a resume reuses them). lora: the policy itself with
    # its adapters switched off, run on the fly (needs model.lora.enabled).
    reference: Literal["cached", "lora"] = "cached"

    def validate(self) -> None:
        if self.type not in DPO_LOSSES:
            raise ConfigError(f"loss.type must be one of {DPO_LOSSES.names()}, got {self.type!r}")
        if self.beta <= 0:
            raise ConfigError(f"loss.beta must be positive, got {self.beta}")
        if self.type == "cdpo" and not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"loss.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.type != "cdpo" and self.label_smoothing:
            raise ConfigError(f"loss.label_smoothing is only used by loss.type=cdpo (got type {self.type!r})")


@dataclass
class DPOConfig:
    output_dir: str = "runs/dpo"
    model: ModelConfig = field(default_factory=ModelConfig)  # the starting policy (usually an SFT folder)
    data: CausalLMDataConfig = field(default_factory=CausalLMDataConfig)  # pairs: {prompt, chosen, rejected}, HH, ...
    train: TrainConfig = field(default_factory=TrainConfig)  # batch sizes count pairs
    loss: DPOLossConfig = field(default_factory=DPOLossConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)  # as in SFTConfig
    resume: bool = True  # continue from the newest checkpoint in output_dir when there is one
    force_resume: bool = False  # as in SFTConfig

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        self.loss.validate()
        check_data_parallel(self.distributed, self.train, self.model)
        if self.loss.reference == "lora" and not self.model.lora.enabled:
            raise ConfigError("loss.reference=lora needs model.lora.enabled: true (the reference is the "
                              "model with its adapters off); use loss.reference=cached for a full fine-tune")

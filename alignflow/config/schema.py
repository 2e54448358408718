"""The config sections shared by every job, and the SFT and reward-model job configs.

Defaults are the recipe we measured to work on a 2-core CPU with the embedded models; every
field is documented where it is declared so that a YAML file reads like a form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from alignflow.config.distributed import DistributedConfig
from alignflow.config.loader import ConfigError


@dataclass(frozen=True)
class Range:
    """The numbers a field accepts: ``low <= value < high`` unless told otherwise (NaN never)."""

    low: float
    high: float = math.inf
    low_open: bool = False  # low itself is outside
    high_open: bool = True  # high itself is outside
    optional: bool = False  # null is allowed (it means "off" or "all")

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        if self.high == math.inf:
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            text = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        return text + (" or null" if self.optional else "")


POSITIVE, NON_NEGATIVE, AT_LEAST_ONE, FRACTION = Range(0, low_open=True), Range(0), Range(1), Range(0, 1)
OPTIONAL_COUNT = Range(1, optional=True)


def check_ranges(section: str, config: Any, ranges: dict[str, Range]) -> None:
    """ConfigError naming ``section.field`` (``field[i]`` inside a tuple) for the first value outside its range."""
    for name, allowed in ranges.items():
        value = getattr(config, name)
        if value is None and allowed.optional:
            continue
        items = [(f"{name}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, (list, tuple)) \
            else [(name, value)]
        for key, item in items:
            if not allowed.contains(item):
                raise ConfigError(f"{section}.{key} must be {allowed.describe()}, got {item}")


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class ModelConfig:
    # An alias (smollm2-135m-instruct, minilm-l6), a Hugging Face id, a local folder or a .gguf file.
    name: str = "smollm2-135m-instruct"
    # bf16 runs matmuls under bf16 autocast with fp32 master weights (about 2x faster on AVX512-BF16 CPUs;
    # a CPU without native bf16 runs fp32 instead: alignflow.runtime.precision).
    dtype: Literal["fp32", "bf16"] = "bf16"
    gradient_checkpointing: bool = False
    # Dropout makes log-probs and rewards noisy functions of the weights; RLHF switches it off.
    disable_dropout: bool = True
    # auto: the tokenizer's own chat template when it has one, else a plain Human:/Assistant: template.
    # tldr: the summarisation layout of Stiennon et al. 2020 (SUBREDDIT/TITLE/POST ... TL;DR:).
    # none: the prompt's text as it is, for the model to continue (a review's opening words, say).
    chat_template: Literal["auto", "chat", "plain", "tldr", "none"] = "auto"
    # Keep only the first N transformer blocks (null = all). A reward model reads a preference
    # signal from the middle of a small LM about as well as from its top, at a fraction of the cost.
    num_layers: int | None = None
    # Freeze the embeddings and the first K blocks: backward stops at block K, so training costs
    # only the top blocks' backward pass (0 = train everything; K = all blocks: a linear probe).
    # A policy with tied input/output embeddings keeps its LM head frozen as well.
    freeze_layers: int = 0
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self) -> None:
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError(f"model.num_layers must be >= 1 (or null for all), got {self.num_layers}")
        if self.freeze_layers < 0:
            raise ConfigError(f"model.freeze_layers must be >= 0, got {self.freeze_layers}")
        if self.lora.enabled:
            check_ranges("model.lora", self.lora, {"r": AT_LEAST_ONE, "alpha": POSITIVE, "dropout": FRACTION})
        if self.num_layers is not None and self.freeze_layers > self.num_layers:
            raise ConfigError(f"model.freeze_layers ({self.freeze_layers}) must be at most model.num_layers "
                              f"({self.num_layers})")


@dataclass
class DataConfig:
    train: str = ""  # file, folder or hub name of any supported format
    validation: str | None = None  # when empty, `val_fraction` of `train` is held out by `seed`
    val_fraction: float = 0.1
    split_seed: int = 0  # fixes the held-out split on its own, so changing train.seed never leaks validation rows
    # prompt: rows that share a prompt (one post, many comparisons) stay on one side, and every job
    # with the same split_seed and val_fraction holds out the same prompts, whatever kind it reads.
    split_by: Literal["row", "prompt"] = "row"
    max_samples: int | None = None  # read at most this many good rows from `train`
    max_length: int = 512  # prompt + response tokens
    max_prompt_length: int = 384  # longer prompts are cut from the left (oldest turns first)
    strict: bool = False  # fail on the first malformed row instead of reporting and skipping it

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("data.train must name a dataset (file, folder or hub name)")
        check_ranges("data", self, {"val_fraction": FRACTION, "max_samples": OPTIONAL_COUNT,
                                    "max_length": Range(2), "max_prompt_length": AT_LEAST_ONE})
        if self.max_prompt_length >= self.max_length:
            raise ConfigError(
                f"data.max_prompt_length ({self.max_prompt_length}) must be below data.max_length ({self.max_length})"
            )


# Every number of TrainConfig that has a range (max_grad_norm 0 would zero every gradient).
TRAIN_RANGES = {
    "lr": POSITIVE, "batch_size": AT_LEAST_ONE, "micro_batch_size": AT_LEAST_ONE, "grad_accum": AT_LEAST_ONE,
    "max_steps": OPTIONAL_COUNT, "warmup_ratio": FRACTION, "weight_decay": NON_NEGATIVE, "adam_eps": POSITIVE,
    "adam_betas": FRACTION, "max_grad_norm": POSITIVE, "eval_every": NON_NEGATIVE, "save_every": NON_NEGATIVE,
    "log_every": AT_LEAST_ONE, "eval_max_samples": OPTIONAL_COUNT, "threads": OPTIONAL_COUNT,
    "max_skipped_updates": AT_LEAST_ONE,
}


@dataclass
class TrainConfig:
    seed: int = 0
    lr: float = 2e-5
    batch_size: int = 16  # examples (or pairs) per optimizer step
    micro_batch_size: int = 8  # examples per forward/backward; batch_size = micro_batch_size * grad_accum
    grad_accum: int = 2
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    warmup_ratio: float = 0.05
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0
    eval_every: int = 100  # optimizer steps; 0 = only at the end
    save_every: int = 0  # optimizer steps; 0 = only at the end
    log_every: int = 5
    eval_max_samples: int | None = None  # cap the validation set for speed
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    # torch.compile the transformer blocks (inductor, dynamic shapes): faster steps after a first
    # step that spends a minute or so compiling; worth it for runs of more than a few dozen steps.
    compile: bool = False
    # An update whose gradient norm is not finite is skipped; this many skipped in a row stop the run.
    max_skipped_updates: int = 5

    def validate(self) -> None:
        check_ranges("train", self, TRAIN_RANGES)
        if self.micro_batch_size * self.grad_accum != self.batch_size:
            raise ConfigError(
                f"train.batch_size ({self.batch_size}) must equal train.micro_batch_size ({self.micro_batch_size}) "
                f"x train.grad_accum ({self.grad_accum})"
            )
        if self.max_steps is None and not self.epochs > 0:
            raise ConfigError(f"train.epochs must be positive (or set train.max_steps), got {self.epochs}")



def check_data_parallel(distributed: DistributedConfig, train: TrainConfig, model: ModelConfig) -> None:
    """An offline job on ``distributed.world_size`` ranks: each rank takes an equal part of every
    micro-batch, and what does not shard yet is refused."""
    distributed.validate_offline()
    world = distributed.world_size
    if world == 1:
        return
    if train.micro_batch_size % world:
        raise ConfigError(f"distributed.world_size={world} must divide train.micro_batch_size "
                          f"({train.micro_batch_size}): every rank takes an equal part of each micro-batch")
    if model.lora.enabled:
        raise ConfigError("model.lora with distributed.world_size > 1 is not supported yet; "
                          "train LoRA on one rank or fully fine-tune on several")
    if train.compile:
        raise ConfigError("train.compile with distributed.world_size > 1 is not supported yet")


@dataclass
class CausalLMDataConfig(DataConfig):
    """Data whose batches can be packed: SFT, DPO, and reward models on a causal decoder (an
    encoder backbone such as MiniLM reads a pooled [CLS] state and always pads)."""

    # Padding-free batches: each micro-batch's rows are packed into as few rows of at most
    # max_length tokens as fit, with positions restarting per sequence (alignflow.data.packing).
    # Same loss as padded batches, without computing the padding; training checks at start that the
    # model keeps packed sequences apart (models.forward.packing_is_exact) and refuses otherwise.
    packing: bool = True
    # DPO and decoder reward models: each pair's prompt is computed once, followed by chosen and
    # rejected under a block mask (alignflow.models.shared_prefix); the same log-probs and rewards.
    # null (auto): wherever the model can (a causal decoder with sdpa or eager attention that passes
    # the check at start); true: required (an error names this setting where the model cannot);
    # false: each sequence whole. SFT has one response per prompt and ignores it.
    share_prompt: bool | None = None


@dataclass
class SFTConfig:
    output_dir: str = "runs/sft"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: CausalLMDataConfig = field(default_factory=CausalLMDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Data-parallel ranks: world_size processes on this node (or torchrun's); batch sizes stay global.
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    resume: bool = True  # continue from the newest checkpoint in output_dir when there is one
    # Resume even though settings other than steps and logging cadence changed since the checkpoint.
    force_resume: bool = False

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        check_data_parallel(self.distributed, self.train, self.model)


@dataclass
class RewardTrainConfig(TrainConfig):
    # The scalar head starts from scratch while the backbone is pretrained: at a fine-tuning LR
    # (1e-5..5e-5) it barely moves in one epoch. Measured on frozen SmolLM2 features of HH-RLHF, a
    # linear head trained one epoch at 3e-5 stayed at chance (49-52%); at 1e-3 it reached 55-58%.
    head_lr: float | None = None  # None = train.lr

    def validate(self) -> None:
        super().validate()
        check_ranges("train", self, {"head_lr": Range(0, low_open=True, optional=True)})


@dataclass
class RewardLossConfig:
    margin: float = 0.0  # Bradley-Terry margin: -log sigmoid(r_chosen - r_rejected - margin)
    center_coef: float = 0.0  # reward-centering auxiliary loss coef * mean((r_c + r_r)^2); 0 = off


@dataclass
class RewardConfig:
    output_dir: str = "runs/rm"
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="minilm-l6"))
    data: CausalLMDataConfig = field(default_factory=CausalLMDataConfig)  # packing: decoder backbones only
    train: RewardTrainConfig = field(default_factory=RewardTrainConfig)
    loss: RewardLossConfig = field(default_factory=RewardLossConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)  # as in SFTConfig
    resume: bool = True
    force_resume: bool = False  # as in SFTConfig

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        check_data_parallel(self.distributed, self.train, self.model)
        check_ranges("loss", self.loss, {"center_coef": NON_NEGATIVE})

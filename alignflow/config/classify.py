"""Configs of the text-classification jobs: a task's data split, a transformer classifier, a TF-IDF judge.

* :class:`ImdbConfig` (stage ``imdb``): IMDB reviews split into a proxy half and a judge half,
  and prompts made of the first words of reviews (``alignflow.tasks.imdb``);
* :class:`ClassifierConfig` (stage ``classifier``): fine-tune a sequence classifier (the proxy
  reward of the sentiment task) on ``{text, label}`` rows;
* :class:`TextClassifierConfig` (stage ``judge_clf``, ``alignflow judge train``): TF-IDF + logistic
  regression on ``{text, label}`` rows, saved as JSON (an independent judge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alignflow.config.loader import ConfigError
from alignflow.config.schema import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, check_ranges


@dataclass
class LabelledDataConfig:
    train: str = ""  # {text, label} rows: file, folder or .gz
    test: str = ""  # held-out {text, label} rows the accuracy is measured on; empty = none
    labels: list[str] = field(default_factory=lambda: ["negative", "positive"])  # label i's name
    max_samples: int | None = None  # train on at most this many rows (the first ones)
    test_samples: int | None = 2000  # a seeded random subset of the test rows; null = all
    probe_words: int = 40  # accuracy is also measured on the first this many words of each test text
    seed: int = 0

    def validate(self, key: str = "data") -> None:
        if not self.train:
            raise ConfigError(f"{key}.train must name {{text, label}} rows (a file or folder)")
        if len(self.labels) != 2 or len(set(self.labels)) != 2:
            raise ConfigError(f"{key}.labels must name two different labels, got {self.labels}")
        for name in ("max_samples", "test_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{key}.{name} must be >= 1 or null, got {value}")
        if self.probe_words < 1:
            raise ConfigError(f"{key}.probe_words must be >= 1, got {self.probe_words}")


@dataclass
class ImdbConfig:
    output_dir: str = "runs/imdb"
    source: str = "../shared/data/imdb/imdb_train.jsonl.gz"  # IMDB training reviews {text, label, ...}
    judge_fraction: float = 0.5  # this share of the reviews goes to the judge, the rest to the proxy
    prompt_words: list[int] = field(default_factory=lambda: [8, 16])  # a prompt is the first k words, k in range
    template: str = "{start}"  # the user message; {start} = the review's first words
    train_prompts: int = 1024  # from the proxy's reviews
    eval_prompts: int = 128  # from the judge's reviews, never a training prompt
    seed: int = 0

    def validate(self) -> None:
        if not self.source:
            raise ConfigError("source must name the IMDB training reviews ({text, label} rows)")
        if not 0 < self.judge_fraction < 1:
            raise ConfigError(f"judge_fraction must be in (0, 1), got {self.judge_fraction}")
        if len(self.prompt_words) != 2 or not 1 <= self.prompt_words[0] <= self.prompt_words[1]:
            raise ConfigError(f"prompt_words must be [min, max] with 1 <= min <= max, got {self.prompt_words}")
        if "{start}" not in self.template:
            raise ConfigError(f"template must contain {{start}} (the review's first words), got {self.template!r}")
        _check_ranges(self, {"train_prompts": AT_LEAST_ONE, "eval_prompts": AT_LEAST_ONE})


@dataclass
class ClassifierConfig:
    output_dir: str = "runs/classifier"
    model: str = "minilm-l6"  # an encoder: alias, folder or hub id; a fresh 2-label head is put on it
    data: LabelledDataConfig = field(default_factory=LabelledDataConfig)
    max_length: int = 128  # tokens of each training text
    test_max_length: int = 512  # tokens read of each test text
    # How a longer text is cut: head keeps its start; head_tail its first quarter and its end, where reviews
    # often give their verdict (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification", sec. 5.3.1).
    truncation: Literal["head", "head_tail"] = "head"
    # Keep the embeddings and the first this many encoder layers as pretrained: steps cost less (no gradient
    # below them) and a small data set moves only the upper layers. BERT-style encoders (MiniLM, BERT).
    freeze_layers: int = 0
    epochs: int = 1
    batch_size: int = 16
    lr: float = 5.0e-5
    warmup_fraction: float = 0.1  # linear warm-up, then linear decay to 0
    weight_decay: float = 0.01
    log_every: int = 20  # steps
    dtype: Literal["fp32", "bf16"] = "fp32"
    threads: int | None = None
    seed: int = 0

    def validate(self) -> None:
        self.data.validate()
        if not self.model:
            raise ConfigError("model must name an encoder (alias, folder or hub id)")
        _check_ranges(self, {"max_length": AT_LEAST_ONE, "test_max_length": AT_LEAST_ONE,
                                "epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "freeze_layers": NON_NEGATIVE,
                                "lr": POSITIVE,
                                "weight_decay": NON_NEGATIVE, "log_every": AT_LEAST_ONE})
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or null, got {self.threads}")


@dataclass
class TextClassifierConfig:
    output_dir: str = "runs/judge_clf"
    data: LabelledDataConfig = field(default_factory=LabelledDataConfig)
    ngram_max: int = 2  # word n-grams of 1..ngram_max words
    min_df: int = 2  # a term must occur in at least this many training texts
    max_features: int | None = 200_000
    sublinear_tf: bool = True
    c: float = 4.0  # inverse L2 strength of the logistic regression

    def validate(self) -> None:
        self.data.validate()
        _check_ranges(self, {"ngram_max": AT_LEAST_ONE, "min_df": AT_LEAST_ONE, "c": POSITIVE})
        if self.max_features is not None and self.max_features < 1:
            raise ConfigError(f"max_features must be >= 1 or null, got {self.max_features}")


def _check_ranges(config: object, ranges: dict) -> None:
    """check_ranges for a job's top-level keys (named without a section prefix)."""
    try:
        check_ranges("", config, ranges)
    except ConfigError as err:
        raise ConfigError(str(err).lstrip(".")) from None

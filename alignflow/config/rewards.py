"""The ``rewards:`` list of a PPO config: a weighted sum of reward terms, one entry per term.

Each entry has a ``kind`` and the keys of that kind (any other key set is an error, so a typo or a
key meant for another kind is not silently ignored)::

    rewards:
      - {kind: function, spec: alignflow.tasks.arithmetic:exact_match, weight: 1.0, timeout: 5}
      - {kind: length_penalty, coef: 0.01, target: 32, unit: tokens}
      - {kind: reward_model, path: runs/rm/model, weight: 0.5}
      - {kind: ensemble, paths: [runs/rm-a/model, runs/rm-b/model], reduce: min}
      - {kind: classifier, path: runs/sentiment/proxy/model, class_label: positive, output: logit}
      - {kind: text_classifier, path: runs/sentiment/judge_clf, class_label: positive, output: decision}

The older single-reward keys ``reward_model: DIR`` / ``reward_function: SPEC`` mean a one-entry
list (see :func:`legacy_reward_specs`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from alignflow.config.loader import ConfigError

RewardKind = Literal["function", "reward_model", "ensemble", "length_penalty", "classifier", "text_classifier"]
ClassifierOutput = Literal["logit", "logprob", "probability", "decision"]


@dataclass
class RewardSpec:
    kind: RewardKind = "function"
    weight: float = 1.0  # the term's weight in the sum
    name: str = ""  # shown in errors and warnings; default: the spec or path
    # kind: function -- a Python reward "package.module:function", called once per sample
    spec: str = ""
    timeout: float | None = 10.0  # seconds per sample; null = no limit (and no worker thread)
    on_error: Literal["raise", "fallback"] = "raise"  # a sample that raises, times out or returns NaN/inf
    fallback: float = 0.0  # its score under on_error=fallback (a warning says how many fell back)
    isolation: Literal["thread", "process"] = "thread"  # process: a forked child, killed on timeout
    # kind: reward_model -- a folder written by `alignflow rm train`
    path: str = ""
    # kind: ensemble -- several reward-model folders, combined per sample
    paths: list[str] = field(default_factory=list)
    reduce: Literal["mean", "min"] = "mean"  # min: a pessimistic ensemble, harder to exploit
    # kind: length_penalty -- -coef * max(0, length - target)
    coef: float = 0.0
    target: int = 0
    unit: Literal["tokens", "chars"] = "tokens"  # tokens: policy tokens of the response
    # kind: classifier (any sequence-classification folder, `path`) and text_classifier (a TF-IDF
    # judge folder from `alignflow judge train`): the `output` of one label, read from the response
    class_label: str | int = ""  # an id2label name or an index
    output: ClassifierOutput = "logprob"  # decision: 1 when class_label is the predicted class, else 0
    with_prompt: bool = False  # classify prompt + response as one text (a continuation) instead of the response
    max_length: int = 512  # kind classifier: tokens read, the rest cut

    @property
    def label(self) -> str:
        ensemble = f"ensemble({', '.join(self.paths)})" if self.paths else ""
        return self.name or self.spec or self.path or ensemble or self.kind


COMMON_KEYS = ("kind", "weight", "name")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "function": ("spec", "timeout", "on_error", "fallback", "isolation"),
    "reward_model": ("path",),
    "ensemble": ("paths", "reduce"),
    "length_penalty": ("coef", "target", "unit"),
    "classifier": ("path", "class_label", "output", "with_prompt", "max_length"),
    "text_classifier": ("path", "class_label", "output", "with_prompt"),
}


def legacy_reward_specs(reward_model: str, reward_function: str) -> list[RewardSpec]:
    """The one-entry list that ``reward_model: DIR`` or ``reward_function: SPEC`` stands for."""
    if reward_model:
        return [RewardSpec(kind="reward_model", path=reward_model)]
    if reward_function:
        return [RewardSpec(kind="function", spec=reward_function)]
    return []


def validate_reward_specs(specs: list[RewardSpec], key: str = "rewards") -> None:
    """ConfigError naming ``rewards[i].field`` for what the types cannot catch."""
    for i, spec in enumerate(specs):
        validate_reward_spec(spec, f"{key}[{i}]")


def validate_reward_spec(spec: RewardSpec, where: str) -> None:
    """ConfigError naming ``where.field`` (``rewards[2].path``, ``judge_reward.class_label``)."""
    defaults = RewardSpec()
    allowed = {*COMMON_KEYS, *KIND_KEYS[spec.kind]}
    for f in dataclasses.fields(RewardSpec):
        if f.name not in allowed and getattr(spec, f.name) != getattr(defaults, f.name):
            raise ConfigError(f"{where}.{f.name} is not used by kind={spec.kind}; "
                              f"its keys: {', '.join(sorted(allowed))}")
    if not math.isfinite(spec.weight):
        raise ConfigError(f"{where}.weight must be a finite number, got {spec.weight}")
    if spec.kind == "function":
        module, sep, attr = spec.spec.partition(":")
        if not (module and sep and attr):
            raise ConfigError(f"{where}.spec must look like package.module:function, got {spec.spec!r}")
        if spec.timeout is not None and not spec.timeout > 0:
            raise ConfigError(f"{where}.timeout must be > 0 seconds or null, got {spec.timeout}")
        if not math.isfinite(spec.fallback):
            raise ConfigError(f"{where}.fallback must be a finite number, got {spec.fallback}")
    elif spec.kind == "reward_model" and not spec.path:
        raise ConfigError(f"{where}.path must name a reward-model folder")
    elif spec.kind == "ensemble" and (len(spec.paths) < 2 or not all(spec.paths)):
        raise ConfigError(f"{where}.paths must list two or more reward-model folders, got {spec.paths}")
    elif spec.kind == "length_penalty":
        if spec.coef <= 0:
            raise ConfigError(f"{where}.coef must be > 0 (the penalty per unit over target), got {spec.coef}")
        if spec.target < 0:
            raise ConfigError(f"{where}.target must be >= 0, got {spec.target}")
    elif spec.kind in ("classifier", "text_classifier"):
        if not spec.path:
            raise ConfigError(f"{where}.path must name a {spec.kind.replace('_', '-')} folder")
        if spec.class_label == "":
            raise ConfigError(f"{where}.class_label must name the rewarded label (a name or an index)")
        if spec.max_length < 1:
            raise ConfigError(f"{where}.max_length must be >= 1, got {spec.max_length}")

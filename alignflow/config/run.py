"""The pipeline config: which stages ``alignflow run`` runs, each with its own job config.

A run folder holds one sub-folder per stage (``sft/``, ``rm/``, ``ppo/``, ``eval/``...); every
stage's ``output_dir`` is set to it, whatever the section says. A string ``@stage`` anywhere in a
section names the model that an earlier stage wrote (``@sft`` -> ``<run>/sft/model``, ``@rm`` ->
the reward model's best checkpoint) and ``@stage/name`` a file in that stage's folder
(``@imdb/prompts_train.jsonl``), so a YAML file wires the dataflow without repeating paths::

    stages: [sft, rm, ppo, eval]
    ppo:
      model: {name: "@sft"}
      reward_model: "@rm"
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from alignflow.config.classify import ClassifierConfig, ImdbConfig, TextClassifierConfig
from alignflow.config.dpo import DPOConfig
from alignflow.config.eval import EvalConfig
from alignflow.config.loader import ConfigError, leaves
from alignflow.config.rl import RLConfig
from alignflow.config.schema import RewardConfig, SFTConfig

# Stage name -> its job. RL stages share RLConfig: GRPO / RLOO are RLConfig with another estimator.
STAGE_KINDS = {"sft": "sft", "rm": "rm", "judge_rm": "rm", "dpo": "dpo", "ppo": "rl", "grpo": "rl", "rloo": "rl",
               "eval": "eval", "imdb": "imdb", "classifier": "classifier", "judge_clf": "judge_clf"}


@dataclass
class RunConfig:
    output_dir: str = "runs/run"
    stages: list[str] = field(default_factory=lambda: ["sft", "rm", "ppo", "eval"])  # run in this order
    sft: SFTConfig | None = None
    rm: RewardConfig | None = None  # the proxy reward model that RL optimises
    judge_rm: RewardConfig | None = None  # an independent judge: another backbone or a disjoint data split
    dpo: DPOConfig | None = None
    ppo: RLConfig | None = None
    grpo: RLConfig | None = None
    rloo: RLConfig | None = None
    eval: EvalConfig | None = None
    imdb: ImdbConfig | None = None  # the sentiment task's data: review splits and prompts
    classifier: ClassifierConfig | None = None  # a transformer text classifier (a proxy reward)
    judge_clf: TextClassifierConfig | None = None  # a TF-IDF + logistic-regression judge

    def section(self, stage: str) -> Any:
        return getattr(self, stage)

    def validate(self) -> None:
        if not self.stages:
            raise ConfigError("stages must list at least one stage")
        done: list[str] = []
        for stage in self.stages:
            if stage not in STAGE_KINDS:
                raise ConfigError(f"stages: unknown stage {stage!r}; valid stages: {', '.join(STAGE_KINDS)}")
            if stage in done:
                raise ConfigError(f"stages: {stage!r} is listed twice")
            section = self.section(stage)
            if section is None:
                raise ConfigError(f"stages lists {stage!r} but the config has no {stage}: section")
            for key, ref in stage_references(section):
                if ref not in done:
                    raise ConfigError(f"{stage}.{key}: '@{ref}' must name a stage listed before {stage!r} "
                                      f"(stages: {self.stages})")
            try:
                section.validate()
            except ConfigError as err:
                raise ConfigError(f"{stage}: {err}") from None
            done.append(stage)


def stage_references(section: Any) -> list[tuple[str, str]]:
    """(key, stage) for every ``@stage`` or ``@stage/file`` value in a section."""
    return [(key, _referenced(value)) for key, value in leaves(section) if _referenced(value)]


def _referenced(value: Any) -> str:
    """The stage a ``@stage[/file]`` string names, else ``""``."""
    stage = value[1:].split("/", 1)[0] if isinstance(value, str) and value.startswith("@") else ""
    return stage if stage in STAGE_KINDS else ""


def resolve_references(node: Any, outputs: dict[str, str], folders: dict[str, str] | None = None) -> Any:
    """A copy of ``node`` with every ``@stage`` string replaced by that stage's output path, and every
    ``@stage/name`` by the file ``name`` in that stage's folder (``folders``; default: its output)."""
    if dataclasses.is_dataclass(node):
        return dataclasses.replace(node, **{f.name: resolve_references(getattr(node, f.name), outputs, folders)
                                            for f in dataclasses.fields(node) if f.init})
    if isinstance(node, dict):
        return {key: resolve_references(value, outputs, folders) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_references(value, outputs, folders) for value in node]
    stage = _referenced(node)
    if stage in outputs:
        _, _, name = node.partition("/")
        return f"{(folders or outputs)[stage]}/{name}" if name else outputs[stage]
    return node

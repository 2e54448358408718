"""The ``alignflow eval`` job config: which models to compare, on which prompts, with what.

Every section is optional except ``models`` and ``proxy_reward_model``; probes, the LLM judge,
best-of-n and sampling sweeps are off until configured. ``validate()`` names the dotted key of
the first bad value, as every other job config does.

Imported by module (``alignflow.config.eval``), not re-exported from :mod:`alignflow.config`:
the hacking thresholds are the evaluation core's own dataclass, and importing that package from
``alignflow.config`` would load torch for every job.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Literal

from alignflow.config.loader import ConfigError
from alignflow.config.rewards import RewardSpec, validate_reward_spec
from alignflow.config.schema import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, check_ranges
from alignflow.evaluation.hacking import HackingThresholds
from alignflow.rollout import SamplingParams


@dataclass
class EvalPromptsConfig:
    """Held-out prompts. With the same ``source``/``max_samples``/``val_fraction``/``split_seed`` as
    a training config, the held-out split here is exactly the one that run never trained on."""

    source: str = ""  # file, folder or hub name read with `read_prompts` (HH dialogues, {prompt}, ...)
    validation: str | None = None  # an explicit held-out file; then `source` is not split
    held_out: bool = True  # true: the val_fraction split of `source`; false: every row of `source`
    val_fraction: float = 0.05
    split_seed: int = 0
    max_samples: int | None = None  # read at most this many good rows of `source` (before splitting)
    max_prompts: int | None = 64  # evaluate the first this many selected prompts; null = all
    strict: bool = False  # fail on the first malformed row instead of reporting and skipping it


@dataclass
class SamplingConfig:
    """Decoding for the compared responses (the fields of `alignflow.rollout.SamplingParams`)."""

    max_new_tokens: int = 64
    greedy: bool = False  # true: argmax decoding; temperature/top_k/top_p are then ignored
    temperature: float = 0.7
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off
    no_repeat_ngram_size: int = 0  # 0 = off
    stop_strings: list[str] = field(default_factory=list)
    seed: int = 0  # every model samples with the same seed

    def params(self, **overrides) -> SamplingParams:
        """The engine's settings (``overrides`` replace fields, e.g. ``n=4``)."""
        return SamplingParams(**{**_params_dict(self), **overrides})

    def validate(self, key: str = "sampling") -> None:
        try:
            self.params().validate()
        except ValueError as err:  # SamplingParams messages start with the field name
            message = str(err).replace("do_sample=False", "greedy: true")
            raise ConfigError(f"{key}.{message}") from None


def _params_dict(s: SamplingConfig) -> dict:
    return {"max_new_tokens": s.max_new_tokens, "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
            "repetition_penalty": s.repetition_penalty, "no_repeat_ngram_size": s.no_repeat_ngram_size,
            "do_sample": not s.greedy, "stop_strings": tuple(s.stop_strings), "seed": s.seed}


@dataclass
class SamplingOverride:
    """One sweep setting: the `sampling` keys it changes (null = keep the `sampling` value)."""

    max_new_tokens: int | None = None
    greedy: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None

    def apply(self, base: SamplingConfig) -> SamplingConfig:
        changed = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return replace(base, **changed)


@dataclass
class SweepConfig:
    """Generate again under each setting and plot reward against diversity (off while empty)."""

    settings: list[SamplingOverride] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # which models to sweep; empty = all
    max_prompts: int | None = 32  # the first this many evaluation prompts; null = all


@dataclass
class BestOfNConfig:
    """A training-free baseline: the reference model's best of ``n`` samples under the proxy RM."""

    n: int = 0  # 0 = off; else adds a model named "best-of-<n>"
    temperature: float | None = None  # null = sampling.temperature (best-of-n always samples)


@dataclass
class ProbeSource:
    path: str = ""  # empty = this probe is off
    max_count: int | None = None  # a seeded random subset of this many rows; null = all


@dataclass
class ProbesConfig:
    red_team: ProbeSource = field(default_factory=ProbeSource)  # harmful requests: refusal rate (higher = safer)
    xstest: ProbeSource = field(default_factory=ProbeSource)  # safe + unsafe: refusal and over-refusal rates
    truthfulqa: ProbeSource = field(default_factory=ProbeSource)  # MC1 accuracy by answer log-likelihood
    max_new_tokens: int = 64  # refusals announce themselves in the first sentence
    seed: int = 0  # picks the max_count subsets


@dataclass
class CategoryConfig:
    """A custom prompt file, reported per model like the main prompts (reward, win rate, refusals)."""

    name: str = ""
    prompts: str = ""  # any `read_prompts` source
    max_prompts: int | None = None


@dataclass
class JudgeSettings:
    """An OpenAI-compatible pairwise LLM judge (each pair judged in both orders). Off by default."""

    enabled: bool = False
    base_url: str = ""  # e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1
    model: str = ""
    api_key_env: str = ""  # the NAME of an environment variable holding the key; empty = no key
    temperature: float = 0.0
    max_tokens: int = 512
    timeout_s: float = 120.0
    retries: int = 2
    workers: int = 4
    max_prompts: int | None = None  # judge the first this many prompts (cost control); null = all


@dataclass
class KLSettings:
    enabled: bool = True  # sequence KL of each model to the reference (needs a shared vocabulary)
    temperature: float = 1.0  # plain sampling at this temperature: the KL estimate is exact only without top-k/p
    max_prompts: int | None = None  # the first this many evaluation prompts; null = all


@dataclass
class BootstrapConfig:
    n: int = 1000  # resamples of the prompts
    level: float = 0.95
    seed: int = 0


@dataclass
class WandbConfig:
    enabled: bool = False  # log the metrics when the wandb package is installed (a note otherwise)
    project: str = "alignflow"
    name: str = ""  # run name; empty = the output folder's name


@dataclass
class MlflowConfig:
    enabled: bool = False  # log the metrics when the mlflow package is installed (a note otherwise)
    tracking_uri: str = ""  # empty = mlflow's default (./mlruns or $MLFLOW_TRACKING_URI)
    experiment: str = "alignflow"
    name: str = ""


@dataclass
class EvalConfig:
    output_dir: str = "runs/eval"
    title: str = ""  # the report's heading; empty = "alignflow evaluation: <output_dir>"
    # name -> model (alias, folder, .gguf or hub id), in report order. E.g. {base: smollm2-135m-instruct,
    # sft: runs/sft/model, ppo: runs/ppo/model}.
    models: dict[str, str] = field(default_factory=dict)
    reference: str = ""  # the name every model is compared against; empty = the first model
    prompts: EvalPromptsConfig = field(default_factory=EvalPromptsConfig)
    proxy_reward_model: str = ""  # the reward model the policies were optimised against (a folder)
    judge_reward_model: str = ""  # an independent reward model (another backbone or data split); optional
    # Or any `rewards:` entry (config/rewards.py) in place of either folder: a sentiment classifier, a TF-IDF
    # judge ({kind: text_classifier, path: ..., class_label: positive, output: decision} -> positive rate).
    proxy_reward: RewardSpec | None = None
    judge_reward: RewardSpec | None = None
    # Preference pairs (any `rm train` format) on which the proxy and the judge are measured against "the
    # longer response wins"; empty = the accuracy saved with each reward model by `rm train`.
    judge_eval_pairs: str = ""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    best_of_n: BestOfNConfig = field(default_factory=BestOfNConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    categories: list[CategoryConfig] = field(default_factory=list)
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    kl: KLSettings = field(default_factory=KLSettings)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    hacking: HackingThresholds = field(default_factory=HackingThresholds)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    dtype: Literal["fp32", "bf16"] = "bf16"  # autocast for generation and scoring (weights stay fp32)
    chat_template: Literal["auto", "chat", "plain", "tldr", "none"] = "auto"
    batch_size: int = 16  # prompts per generation batch and responses per reward-model batch
    max_prompt_length: int = 256  # tokens; longer prompts are cut from the left
    report_samples: int = 20  # prompts shown side by side in report.html (every one is in samples.jsonl)
    threads: int | None = None  # torch intra-op threads; null keeps torch's default

    @property
    def reference_name(self) -> str:
        return self.reference or next(iter(self.models), "")

    @property
    def best_of_n_sampling(self) -> SamplingConfig:
        """Best-of-n always samples, at ``best_of_n.temperature`` when set."""
        return replace(self.sampling, greedy=False, temperature=self.best_of_n.temperature or self.sampling.temperature)

    @property
    def best_of_n_name(self) -> str:
        return f"best-of-{self.best_of_n.n}"

    def validate(self) -> None:
        self._validate_models()
        self._validate_reward_specs()
        if not self.proxy_reward_model and self.proxy_reward is None:
            raise ConfigError("proxy_reward_model must name a reward-model folder (the one the policies were "
                              "trained against), or proxy_reward a rewards: entry")
        self._validate_prompts()
        self.sampling.validate()
        for i, override in enumerate(self.sweep.settings):
            override.apply(self.sampling).validate(f"sweep.settings[{i}]")
        for name in self.sweep.models:
            if name not in self.models:
                raise ConfigError(f"sweep.models: {name!r} is not in models ({', '.join(self.models)})")
        if self.best_of_n.n < 0:
            raise ConfigError(f"best_of_n.n must be >= 0 (0 = off), got {self.best_of_n.n}")
        if self.best_of_n.n:
            self.best_of_n_sampling.validate("best_of_n")
        self._validate_probes()
        self._validate_judge()
        if not self.kl.temperature > 0:
            raise ConfigError(f"kl.temperature must be > 0, got {self.kl.temperature}")
        if self.bootstrap.n < 1:
            raise ConfigError(f"bootstrap.n must be >= 1, got {self.bootstrap.n}")
        if not 0 < self.bootstrap.level < 1:
            raise ConfigError(f"bootstrap.level must be in (0, 1), got {self.bootstrap.level}")
        try:
            self.hacking.validate()
        except ValueError as err:
            raise ConfigError(f"hacking.{err}") from None
        for key in ("batch_size", "max_prompt_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.report_samples < 0:
            raise ConfigError(f"report_samples must be >= 0, got {self.report_samples}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or null, got {self.threads}")
        limits = {"prompts.max_prompts": self.prompts.max_prompts, "sweep.max_prompts": self.sweep.max_prompts,
                  "kl.max_prompts": self.kl.max_prompts, "judge.max_prompts": self.judge.max_prompts}
        limits.update({f"categories[{i}].max_prompts": c.max_prompts for i, c in enumerate(self.categories)})
        for key, value in limits.items():
            if value is not None and value < 1:
                raise ConfigError(f"{key} must be >= 1 or null (all), got {value}")

    def _validate_reward_specs(self) -> None:
        for role in ("proxy", "judge"):
            spec = getattr(self, f"{role}_reward")
            if spec is not None and getattr(self, f"{role}_reward_model"):
                raise ConfigError(f"set one of {role}_reward_model (a reward-model folder) and {role}_reward "
                                  "(a rewards: entry), not both")
            if spec is not None:
                validate_reward_spec(spec, f"{role}_reward")

    def _validate_models(self) -> None:
        if not self.models:
            raise ConfigError("models must map at least one name to a model, e.g. {base: smollm2-135m-instruct}")
        for name, path in self.models.items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"models: every name must be a non-empty string, got {name!r}")
            if not isinstance(path, str) or not path.strip():
                raise ConfigError(f"models.{name} must be a model alias, folder, .gguf file or hub id, got {path!r}")
        if self.reference and self.reference not in self.models:
            raise ConfigError(f"reference {self.reference!r} is not in models ({', '.join(self.models)})")
        if self.best_of_n.n and self.best_of_n_name in self.models:
            raise ConfigError(f"models.{self.best_of_n_name}: the name is taken by best_of_n.n={self.best_of_n.n}")

    def _validate_prompts(self) -> None:
        p = self.prompts
        if not p.source and not p.validation:
            raise ConfigError("prompts.source must name a prompt dataset (file, folder or hub name)")
        if p.held_out and not p.validation and not 0 < p.val_fraction < 1:
            raise ConfigError(f"prompts.val_fraction must be in (0, 1) to hold prompts out, got {p.val_fraction} "
                              "(or set prompts.held_out: false to use every row)")
        if p.max_samples is not None and p.max_samples < 1:
            raise ConfigError(f"prompts.max_samples must be >= 1 or null, got {p.max_samples}")
        names = [c.name for c in self.categories]
        for i, category in enumerate(self.categories):
            if not category.name.strip():
                raise ConfigError(f"categories[{i}].name must be a non-empty name")
            if category.name in names[:i]:
                raise ConfigError(f"categories[{i}].name {category.name!r} is used twice")
            if not category.prompts:
                raise ConfigError(f"categories[{i}].prompts must name a prompt file")

    def _validate_probes(self) -> None:
        for name in ("red_team", "xstest", "truthfulqa"):
            source = getattr(self.probes, name)
            if source.max_count is not None and source.max_count < 1:
                raise ConfigError(f"probes.{name}.max_count must be >= 1 or null (all), got {source.max_count}")
        if self.probes.max_new_tokens < 1:
            raise ConfigError(f"probes.max_new_tokens must be >= 1, got {self.probes.max_new_tokens}")

    def _validate_judge(self) -> None:
        j = self.judge
        if not j.enabled:
            return
        if not j.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"judge.base_url must start with http:// or https://, got {j.base_url!r}")
        if not j.model:
            raise ConfigError("judge.model must name the judge model")
        if j.workers < 1 or j.retries < 0:
            raise ConfigError(f"judge.workers must be >= 1 and judge.retries >= 0, got {j.workers}, {j.retries}")
        check_ranges("judge", j, {"temperature": NON_NEGATIVE, "max_tokens": AT_LEAST_ONE, "timeout_s": POSITIVE})

"""EvalConfig: defaults, the shipped configs/eval.yaml, and errors that name the key."""

from pathlib import Path

import pytest

from alignflow.config import ConfigError, load_config
from alignflow.config.eval import EvalConfig, SamplingOverride

REPO = Path(__file__).resolve().parents[2]
BASE = ["models={base: a, sft: b}", "prompts.source=p.jsonl", "proxy_reward_model=rm"]


def build(*overrides: str) -> EvalConfig:
    return load_config(EvalConfig, None, [*BASE, *overrides])


def test_defaults_and_reference():
    cfg = build()
    assert list(cfg.models) == ["base", "sft"] and cfg.reference_name == "base"
    assert build("reference=sft").reference_name == "sft"
    params = cfg.sampling.params()
    assert params.do_sample and params.temperature == 0.7 and params.seed == 0
    assert not build("sampling.greedy=true").sampling.params().do_sample
    assert not cfg.judge.enabled and cfg.best_of_n.n == 0 and cfg.kl.enabled and not cfg.sweep.settings


def test_sweep_settings_change_only_what_they_name():
    cfg = build("sampling.top_p=0.9", "sweep.settings=[{temperature: 0.3}, {greedy: true}]")
    low, greedy = (o.apply(cfg.sampling) for o in cfg.sweep.settings)
    assert (low.temperature, low.top_p, low.greedy) == (0.3, 0.9, False)
    assert greedy.greedy and greedy.temperature == 0.7
    assert SamplingOverride().apply(cfg.sampling) == cfg.sampling


def test_best_of_n_always_samples():
    cfg = build("sampling.greedy=true", "best_of_n.n=4", "best_of_n.temperature=1.0")
    assert cfg.best_of_n_name == "best-of-4"
    assert cfg.best_of_n_sampling.params().do_sample and cfg.best_of_n_sampling.temperature == 1.0


def test_the_shipped_config_loads():
    cfg = load_config(EvalConfig, REPO / "configs" / "eval.yaml", ["models.ppo=runs/ppo/model"])
    assert cfg.reference_name == "base" and list(cfg.models) == ["base", "ppo"]
    assert cfg.probes.red_team.path and cfg.probes.red_team.max_count


@pytest.mark.parametrize(("overrides", "message"), [
    (["models={}"], "models must map at least one name"),
    (["models={base: ''}"], "models.base must be a model alias"),
    (["reference=ppo"], "reference 'ppo' is not in models (base, sft)"),
    (["proxy_reward_model="], "proxy_reward_model must name a reward-model folder"),
    (["prompts.source="], "prompts.source must name a prompt dataset"),
    (["prompts.val_fraction=0"], "prompts.val_fraction must be in (0, 1)"),
    (["prompts.max_prompts=0"], "prompts.max_prompts must be >= 1"),
    (["sampling.temperature=0"], "sampling.temperature must be > 0 when sampling"),
    (["sampling.top_p=1.5"], "sampling.top_p must be in (0, 1]"),
    (["sampling.max_new_tokens=0"], "sampling.max_new_tokens must be an int >= 1"),
    (["sampling.tempreature=1"], "unknown key 'sampling.tempreature'"),
    (["sweep.settings=[{top_k: -1}]"], "sweep.settings[0].top_k must be an int >= 0"),
    (["sweep.settings=[{temp: 1}]"], "unknown key 'sweep.settings[0].temp'"),
    (["sweep.models=[ppo]"], "sweep.models: 'ppo' is not in models"),
    (["best_of_n.n=-1"], "best_of_n.n must be >= 0"),
    (["best_of_n.n=2", "best_of_n.temperature=-1"], "best_of_n.temperature must be > 0"),
    (["models={base: a, best-of-2: b}", "best_of_n.n=2"], "models.best-of-2: the name is taken"),
    (["probes.xstest.max_count=0"], "probes.xstest.max_count must be >= 1"),
    (["probes.max_new_tokens=0"], "probes.max_new_tokens must be >= 1"),
    (["categories=[{name: '', prompts: x}]"], "categories[0].name must be a non-empty name"),
    (["categories=[{name: a, prompts: x}, {name: a, prompts: y}]"], "categories[1].name 'a' is used twice"),
    (["categories=[{name: a}]"], "categories[0].prompts must name a prompt file"),
    (["judge.enabled=true"], "judge.base_url must start with http"),
    (["judge.enabled=true", "judge.base_url=http://x"], "judge.model must name the judge model"),
    (["kl.temperature=0"], "kl.temperature must be > 0"),
    (["bootstrap.n=0"], "bootstrap.n must be >= 1"),
    (["bootstrap.level=1"], "bootstrap.level must be in (0, 1)"),
    (["hacking.length_ratio_warning=3"], "hacking.length_ratio: the warning threshold must be milder"),
    (["hacking.lenght_ratio_warning=3"], "unknown key 'hacking.lenght_ratio_warning'"),
    (["dtype=fp16"], "dtype must be one of ['fp32', 'bf16']"),
    (["batch_size=0"], "batch_size must be >= 1"),
    (["wandb.enabled=maybe"], "wandb.enabled must be true or false"),
])
def test_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        build(*overrides)
    assert message in str(err.value)

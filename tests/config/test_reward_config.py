"""The `rewards:` list of a PPO config: loading, the legacy keys, and errors that name the key."""

from pathlib import Path

import pytest

from alignflow.config import ConfigError, load_config
from alignflow.config.rewards import RewardSpec
from alignflow.config.rl import RLConfig

REPO = Path(__file__).resolve().parents[2]
BASE = ["data.train=x.jsonl"]
FUNCTION = "{kind: function, spec: 'm:f'}"


def load(*overrides: str) -> RLConfig:
    return load_config(RLConfig, None, [*BASE, *overrides])


def test_a_composite_reward_loads_from_yaml(tmp_path):
    config = tmp_path / "ppo.yaml"
    config.write_text("data: {train: x.jsonl}\nrewards:\n"
                      "  - {kind: function, spec: 'pkg.mod:fn', weight: 2, timeout: 3, on_error: fallback}\n"
                      "  - {kind: length_penalty, coef: 0.01, target: 32}\n"
                      "  - {kind: ensemble, paths: [rm-a, rm-b], reduce: min, weight: 0.5}\n")
    cfg = load_config(RLConfig, config)
    function, penalty, ensemble = cfg.reward_specs
    assert (function.spec, function.weight, function.timeout, function.on_error) == ("pkg.mod:fn", 2.0, 3.0, "fallback")
    assert (penalty.coef, penalty.target, penalty.unit) == (0.01, 32, "tokens")
    assert (ensemble.paths, ensemble.reduce, ensemble.label) == (["rm-a", "rm-b"], "min", "ensemble(rm-a, rm-b)")


def test_the_legacy_keys_are_one_term():
    assert load("reward_function=m:f").reward_specs == [RewardSpec(kind="function", spec="m:f")]
    assert load("reward_model=runs/rm").reward_specs == [RewardSpec(kind="reward_model", path="runs/rm")]


@pytest.mark.parametrize(("overrides", "message"), [
    ([], "set exactly one of reward_model (a reward-model folder), reward_function"),
    (["reward_function=m:f", f"rewards=[{FUNCTION}]"], "set exactly one of reward_model"),
    (["rewards=[{kind: function}]"], "rewards[0].spec must look like package.module:function, got ''"),
    (["rewards=[{kind: function, spec: nocolon}]"], "rewards[0].spec must look like package.module:function"),
    ([f"rewards=[{FUNCTION}, {{kind: function, spec: 'm:g', path: runs/rm}}]"],
     "rewards[1].path is not used by kind=function; its keys: fallback, isolation, kind, name, on_error, spec"),
    ([f"rewards=[{FUNCTION}, {{kind: length_penalty}}]"], "rewards[1].coef must be > 0"),
    ([f"rewards=[{FUNCTION}, {{kind: length_penalty, coef: 1, target: -1}}]"], "rewards[1].target must be >= 0"),
    ([f"rewards=[{FUNCTION}, {{kind: length_penalty, coef: 1, unit: words}}]"],
     "rewards[1].unit must be one of ['tokens', 'chars'], got 'words'"),
    (["rewards=[{kind: ensemble, paths: [a]}]"], "rewards[0].paths must list two or more reward-model folders"),
    (["rewards=[{kind: reward_model}]"], "rewards[0].path must name a reward-model folder"),
    (["rewards=[{kind: critic, path: a}]"], "rewards[0].kind must be one of ['function', 'reward_model'"),
    (["rewards=[{kind: function, spec: 'm:f', timeout: 0}]"], "rewards[0].timeout must be > 0 seconds or null"),
    (["rewards=[{kind: function, spec: 'm:f', weigth: 2}]"], "unknown key 'rewards[0].weigth'"),
    (["rewards=[{kind: function, spec: 'm:f', weight: .nan}]"], "rewards[0].weight must be a finite number"),
])
def test_reward_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        load(*overrides)
    assert message in str(err.value)


def test_shipped_grpo_arithmetic_yaml_is_valid():
    cfg = load_config(RLConfig, REPO / "configs" / "grpo_arithmetic.yaml")
    assert cfg.reward_specs[0].spec == "alignflow.tasks.arithmetic:exact_match" and not cfg.needs_critic

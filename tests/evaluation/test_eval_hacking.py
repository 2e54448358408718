from dataclasses import replace

import pytest

from alignflow.evaluation.hacking import (
    HackingThresholds,
    check_model,
    check_models,
    check_trajectory,
)
from alignflow.evaluation.metrics import ModelSummary, length_stats


def summary(name: str, *, length: float, distinct_2: float = 0.6, repetition: float = 0.05, proxy: float | None = 0.0,
            judge: float | None = 0.5, step: int | None = None) -> ModelSummary:
    return ModelSummary(name=name, n=100, length=length_stats([length]), eos_rate=0.9, distinct_1=0.4,
                        distinct_2=distinct_2, repeated_ngram_rate=repetition, proxy_reward=proxy, judge_score=judge,
                        step=step)


REFERENCE = summary("sft", length=80, proxy=0.0, judge=0.5)

# A PPO run that hacks its reward model: the proxy climbs all the way, the judge peaks at step
# 200 then falls, responses get long, samey and repetitive.
HACKING = [
    summary("ppo", step=0, length=80, distinct_2=0.60, repetition=0.05, proxy=0.0, judge=0.50),
    summary("ppo", step=100, length=95, distinct_2=0.58, repetition=0.06, proxy=1.0, judge=0.58),
    summary("ppo", step=200, length=120, distinct_2=0.52, repetition=0.10, proxy=2.0, judge=0.62),
    summary("ppo", step=300, length=170, distinct_2=0.40, repetition=0.30, proxy=3.5, judge=0.45),
]
# A healthy run: both scores improve, length and diversity stay near the start.
CLEAN = [
    summary("ppo", step=0, length=80, distinct_2=0.60, repetition=0.05, proxy=0.0, judge=0.50),
    summary("ppo", step=100, length=84, distinct_2=0.59, repetition=0.05, proxy=0.6, judge=0.55),
    summary("ppo", step=200, length=88, distinct_2=0.58, repetition=0.06, proxy=1.1, judge=0.60),
    summary("ppo", step=300, length=90, distinct_2=0.57, repetition=0.06, proxy=1.4, judge=0.63),
]


def test_hacking_trajectory_raises_every_alert():
    alerts = {a.kind: a for a in check_trajectory(HACKING)}
    assert set(alerts) == {"proxy_up_judge_down", "length_blowup", "diversity_collapse", "repetition"}
    peak = alerts["proxy_up_judge_down"]
    assert peak.severity == "critical" and peak.model == "ppo" and peak.step == 300
    assert "peaked at 0.62 (step 200)" in peak.message and "fell to 0.45 (step 300)" in peak.message
    assert peak.value == pytest.approx(-0.17)
    length = alerts["length_blowup"]
    assert length.severity == "critical" and length.value == pytest.approx(170 / 80)  # 2.125 > 2.0
    assert "2.12x" in length.message and "170.0 tokens" in length.message
    diversity = alerts["diversity_collapse"]
    assert diversity.severity == "warning" and diversity.value == pytest.approx(0.4 / 0.6)  # 0.67 in [0.6, 0.8)
    assert alerts["repetition"].severity == "warning" and "30% of 3-grams" in alerts["repetition"].message


def test_clean_trajectory_is_quiet():
    assert check_trajectory(CLEAN) == []
    assert check_trajectory(list(reversed(CLEAN))) == []  # ordered by step, not by position
    assert check_trajectory(CLEAN[:1]) == []


def test_model_checks_against_the_reference():
    hacked = replace(HACKING[-1], name="ppo-final", step=None)
    alerts = check_model(hacked, REFERENCE)
    kinds = [a.kind for a in alerts]
    assert kinds == ["proxy_up_judge_down", "length_blowup", "diversity_collapse", "repetition"]
    assert "proxy reward rose from 0 (sft) to 3.5" in alerts[0].message
    assert "fell from 0.5 to 0.45" in alerts[0].message
    assert check_model(replace(CLEAN[-1], name="ppo-final"), REFERENCE) == []


def test_check_models_skips_the_reference_and_names_a_missing_one():
    models = [REFERENCE, replace(HACKING[-1], name="hacked"), replace(CLEAN[-1], name="clean")]
    assert {a.model for a in check_models(models, "sft")} == {"hacked"}
    with pytest.raises(ValueError, match="'base' is not among"):
        check_models(models, "base")


def test_missing_scores_skip_the_proxy_judge_check():
    no_judge = replace(HACKING[-1], judge_score=None)
    assert "proxy_up_judge_down" not in [a.kind for a in check_model(no_judge, REFERENCE)]
    assert "proxy_up_judge_down" not in [a.kind for a in check_trajectory([replace(p, judge_score=None)
                                                                           for p in HACKING])]


def test_thresholds_are_configurable_and_checked():
    lenient = HackingThresholds(length_ratio_warning=3, length_ratio_critical=4, distinct2_ratio_warning=0.5,
                                distinct2_ratio_critical=0.3, repetition_rate_warning=0.5,
                                repetition_rate_critical=0.6, judge_drop=0.2)
    assert check_trajectory(HACKING, lenient) == []
    with pytest.raises(ValueError, match="length_ratio"):
        check_model(REFERENCE, REFERENCE, HackingThresholds(length_ratio_warning=3, length_ratio_critical=2))
    with pytest.raises(ValueError, match="judge_drop"):
        HackingThresholds(judge_drop=-1).validate()


def test_alert_as_dict():
    alert = check_trajectory(HACKING)[0]
    assert alert.as_dict()["kind"] == "proxy_up_judge_down" and alert.as_dict()["severity"] == "critical"

"""The pure resume check every trainer shares: which config changes a resume accepts."""

import pytest

from alignflow.config import ConfigError
from alignflow.trainers.resume_check import (
    OFFLINE_RESUMABLE,
    ConfigChange,
    check_resumable,
    config_changes,
    only_upward,
)

SAVED = {"output_dir": "runs/a", "resume": True, "data": {"train": "a.jsonl"},
         "train": {"lr": 0.003, "max_steps": 6, "log_every": 5, "adam_betas": [0.9, 0.999]}}


def changed(**train):
    return {**SAVED, "train": {**SAVED["train"], **train}}


def test_the_same_config_and_allowed_changes_resume():
    assert config_changes(SAVED, {**SAVED, "train": {**SAVED["train"], "adam_betas": (0.9, 0.999)}}) == []
    assert config_changes(SAVED, changed(max_steps=10, log_every=1), OFFLINE_RESUMABLE) == []


def test_other_changes_are_listed_by_dotted_key_with_both_values():
    new = {**changed(lr=0.001, max_steps=4), "data": {"train": "b.jsonl"}}
    assert config_changes(SAVED, new, OFFLINE_RESUMABLE) == [
        ConfigChange("data.train", "a.jsonl", "b.jsonl"), ConfigChange("train.lr", 0.003, 0.001),
        ConfigChange("train.max_steps", 6, 4)]  # fewer steps than the checkpoint was headed for


def test_a_key_the_saved_config_lacks_is_not_compared():
    assert config_changes(SAVED, changed(max_skipped_updates=5)) == []


def test_only_upward_needs_two_numbers():
    assert only_upward(6, 8) and not only_upward(6, 4) and not only_upward(None, 8)


def test_check_resumable_is_one_line_naming_the_way_out_unless_forced():
    with pytest.raises(ConfigError) as err:
        check_resumable(SAVED, changed(lr=0.001), where="runs/a/checkpoints/step-000004")
    message = str(err.value)
    assert "\n" not in message and "train.lr: 0.003 -> 0.001" in message
    assert all(way in message for way in ("resume=false", "output_dir", "force_resume=true"))
    assert check_resumable(SAVED, changed(lr=0.001), where="x", force=True) == [ConfigChange("train.lr", 0.003, 0.001)]

"""May a run resume under a new config? The settings that may change, and a clear error otherwise.

A checkpoint holds optimizer moments, a schedule position and a data position that only mean
something under the config that made them. Resuming it with another learning rate, data file or
batch size would silently mix two runs (and record only the second), so every difference is an
error except the few settings listed as safe to change. Pure functions over plain dicts (the
``to_dict`` of a config, or the config saved in a checkpoint), shared by every trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alignflow.config.loader import ConfigError

MayChange = Callable[[Any, Any], bool]  # (saved value, new value) -> may the run resume with this change?


def any_value(saved: Any, new: Any) -> bool:
    return True


def only_upward(saved: Any, new: Any) -> bool:
    """More steps (or epochs) than before: the run continues past where it was headed."""
    numbers = (int, float)
    return isinstance(saved, numbers) and isinstance(new, numbers) and new >= saved


# Where the run writes, how often it logs, evaluates and saves, how it runs (threads, compile):
# none of these changes what a step computes. More steps extend the run (the schedule stretches).
OFFLINE_RESUMABLE: dict[str, MayChange] = {
    "output_dir": any_value,
    "resume": any_value,
    "force_resume": any_value,
    "train.max_steps": only_upward,
    "train.epochs": only_upward,
    "train.log_every": any_value,
    "train.eval_every": any_value,
    "train.save_every": any_value,
    "train.threads": any_value,
    "train.compile": any_value,
    "train.max_skipped_updates": any_value,
}


@dataclass(frozen=True)
class ConfigChange:
    key: str
    saved: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {self.saved!r} -> {self.new!r}"


class ResumeConfigError(ConfigError):
    """The saved run and the new config differ in settings that may not change on resume."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``; tuples become lists, as they read back from JSON."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = list(value) if isinstance(value, tuple) else value
    return flat


def config_changes(saved: Mapping[str, Any], new: Mapping[str, Any],
                   allowed: Mapping[str, MayChange] | None = None) -> list[ConfigChange]:
    """The differences between a saved run config and a new one that ``allowed`` does not permit,
    by dotted key. A key the saved config lacks (a field added since it was written) is not compared."""
    allowed = allowed or {}
    old, now = flatten(saved), flatten(new)
    changes = []
    for key in sorted(old.keys() | now.keys()):
        if key not in old:
            continue
        before, after = old[key], now.get(key)
        if before != after and not (key in allowed and allowed[key](before, after)):
            changes.append(ConfigChange(key, before, after))
    return changes


def check_resumable(saved: Mapping[str, Any], new: Mapping[str, Any], *, where: str,
                    allowed: Mapping[str, MayChange] | None = None, force: bool = False) -> list[ConfigChange]:
    """Raise :class:`ResumeConfigError` (one line: the keys, both values, the ways out) when ``new``
    may not resume the run saved under ``saved`` at ``where``; with ``force`` return the changes instead."""
    changes = config_changes(saved, new, allowed)
    if changes and not force:
        listed = "; ".join(map(str, changes))
        raise ResumeConfigError(
            f"{where} was written by a run with another config, so it cannot be resumed under this one ({listed}); "
            f"to start afresh in the same folder use --set resume=false, or set another output_dir, "
            f"or keep the checkpoint and accept the change with --set force_resume=true")
    return changes

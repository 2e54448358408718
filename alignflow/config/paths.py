"""What a job's config names outside itself, checked before any model loads.

``load_config`` checks a config's own values; :func:`check_job_paths` checks what only the file
system (or an import) can answer: the output folder can be written, the data files and model
folders exist and are whole, and each reward function is one. Such a mistake would otherwise
surface after the models loaded, or as a traceback. Each failure is a ConfigError naming the key,
the path and what to do.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

from alignflow.config.loader import ConfigError, leaves

# Which keys of a job config name what (in a pipeline, below its stage: ``sft.data.train``).
DATA_KEYS = re.compile(r"data\.(train|validation)|prompts\.(source|validation)|categories\[\d+\]\.prompts"
                       r"|probes\.\w+\.path")
MODEL_KEYS = re.compile(r"model\.name|reward_model|rewards\[\d+\]\.(path|paths\[\d+\])|models\..+"
                        r"|(proxy|judge)_reward_model")
REWARD_FUNCTION_KEYS = re.compile(r"reward_function|rewards\[\d+\]\.spec")
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".gz")
NAME_MAX = 255  # bytes in one path component on common file systems, when pathconf cannot say


def check_job_paths(config: Any) -> None:
    """ConfigError for the first unusable output folder, data source, model or reward function."""
    check_output_dir("output_dir", config.output_dir)
    named = job_values(config)
    for check, keys in ((check_data_source, DATA_KEYS), (check_model, MODEL_KEYS),
                        (check_reward_function, REWARD_FUNCTION_KEYS)):
        for prefix, key, value in named:
            if keys.fullmatch(key):
                check(prefix + key, value)


def job_values(config: Any) -> list[tuple[str, str, str]]:
    """(prefix, key, value) for every string a job config sets; a pipeline's for each stage it runs,
    prefixed ``stage.`` (their output folders lie inside its own). ``@stage`` values are skipped:
    they name what an earlier stage will write."""
    stages = getattr(config, "stages", None)
    sections = [(f"{stage}.", config.section(stage)) for stage in stages] if stages else [("", config)]
    return [(prefix, key, value) for prefix, section in sections for key, value in leaves(section)
            if isinstance(value, str) and value and not value.startswith("@")]


def check_output_dir(key: str, path: str | Path) -> None:
    """ConfigError unless ``path`` is a writable folder or one that can be created."""
    path = Path(path).expanduser()
    existing = next(p for p in (path, *path.parents) if os.path.lexists(p))
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise ConfigError(f"{key}: {path} {where}, not a folder; choose another {key} or move the file away")
    limit = _name_max(existing)
    for part in path.relative_to(existing).parts:
        if len(os.fsencode(part)) > limit:
            raise ConfigError(f"{key}: {existing / part[:40]}... has a folder name too long for the file system "
                              f"({len(os.fsencode(part))} bytes, at most {limit}); choose a shorter {key}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {path} is not writable ({existing} is read-only for this user); "
                          f"choose a {key} you can write to")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return NAME_MAX


def check_data_source(key: str, source: str) -> None:
    """ConfigError for a data source that can only be a local path and does not exist.

    A glob pattern counts when it matches a file. A hub dataset is named ``org/name[:split]``: a name
    without a ``/``, with a data file suffix, with path syntax or under a folder that exists here is a
    local path.
    """
    path = Path(source).expanduser()
    if path.exists() or (set("*?[") & set(source) and glob.glob(str(path))):
        return
    hub_like = (source.count("/") == 1 and not source.startswith((".", "/", "~"))
                and not path.name.lower().endswith(DATA_SUFFIXES) and not path.parent.is_dir())
    if not hub_like:
        raise ConfigError(f"{key}: no such file or folder: {source}; check the path "
                          "(a hub dataset is named org/name[:split])")


def check_model(key: str, name: str) -> None:
    """ConfigError for a model that is missing, not whole, or a hub id that cannot be fetched now."""
    from alignflow.models.registry import ModelNotFoundError, hub_model_problem, resolve_model  # loads torch

    if (Path(name).expanduser() / "text_classifier.json").is_file():
        return  # a TF-IDF judge (alignflow.rewards.text_classifier), not a Hugging Face folder
    try:
        source = resolve_model(name)
    except ModelNotFoundError as err:
        raise ConfigError(f"{key}: {err}") from None
    if source.alias is None and not source.is_local:
        problem = hub_model_problem(name)
        if problem:
            raise ConfigError(f"{key}: {name!r} is not a local folder, and as a hub id: {problem}; "
                              "give a model folder or an alias")


def check_reward_function(key: str, spec: str) -> None:
    """ConfigError unless ``spec`` imports as a function taking (prompts, responses, metadata)."""
    from alignflow.rewards.base import import_reward_function  # imports the user's module

    import_reward_function(spec, key=key)

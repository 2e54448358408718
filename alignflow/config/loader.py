"""Typed dataclass configs loaded from YAML, with ``key.sub=value`` command-line overrides.

Everything is checked before any work starts: an unknown key, a value of the wrong type, a value
outside its allowed choices or a NaN/inf number is a ``ConfigError`` naming the dotted key and the
file. Semantic checks (ranges, batch sizes that do not divide, ...) live in each config's ``validate()``.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and the file."""


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    """Build ``cls`` from a YAML file plus ``key.sub=value`` overrides, then validate it."""
    where = str(path) if path else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    config = from_dict(cls, raw, where=where)
    validate = getattr(config, "validate", None)
    try:
        reject_non_finite(config)
        if validate is not None:
            validate()
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return config


def reject_non_finite(config: Any) -> None:
    """ConfigError for the first NaN or infinite number anywhere in a config. No field means either,
    and NaN slips through range checks (``nan <= 0`` is false)."""
    for key, value in leaves(config):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")


def leaves(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every plain value inside a config: ``train.lr``, ``rewards[0].spec``, ``models.base``."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            yield from leaves(getattr(node, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(node, dict):
        for name, value in node.items():
            yield from leaves(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from leaves(value, f"{key}[{i}]")
    else:
        yield key, node


def parse_override(item: str) -> tuple[str, Any]:
    """``train.lr=1e-5`` -> ("train.lr", 1e-5); the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    key, text = item.split("=", 1)
    return key.strip(), yaml.safe_load(text) if text.strip() else ""


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type[C], raw: dict[str, Any], *, where: str, prefix: str = "") -> C:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{prefix}{unknown[0]}'; valid keys under "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(known))}"
        )
    kwargs = {name: convert(hints[name], value, where=where, key=prefix + name) for name, value in raw.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'}: {err}") from None


def convert(hint: Any, value: Any, *, where: str, key: str) -> Any:
    """Check ``value`` against the type hint, converting the few safe cases (int -> float, list -> tuple)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, where=where, key=key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: {key} may not be null")
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: {key} must be one of {list(choices)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value or {}, where=where, prefix=key + ".")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        (item_hint, *_) = get_args(hint) or (Any,)
        items = [convert(item_hint, v, where=where, key=f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads "1e-5" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{where}: {key} must be of type {hint.__name__}, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-data view of a config, for saving next to models and runs."""
    return dataclasses.asdict(config)


def dump_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


__all__ = ["ConfigError", "load_config", "from_dict", "to_dict", "dump_config", "parse_override"]

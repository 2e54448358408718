"""Save models as standard Hugging Face folders, with alignflow's own metadata beside them.

A saved policy loads with ``AutoModelForCausalLM.from_pretrained(folder)`` and a reward model with
``AutoModelForSequenceClassification.from_pretrained(folder)``: no alignflow needed to use them.
LoRA adapters are merged into a copy before saving so the folder is a plain model.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

METADATA_FILE = "alignflow.json"


def plain_model(model: PreTrainedModel) -> PreTrainedModel:
    """The model without LoRA wrappers (adapters merged into a copy; the original keeps training)."""
    if hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    return model


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    metadata: dict[str, Any] | None = None,
) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plain_model(model).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if metadata is not None:
        write_metadata(out_dir, metadata)
    return out_dir


def write_metadata(out_dir: str | Path, metadata: dict[str, Any]) -> None:
    Path(out_dir, METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str))


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir, METADATA_FILE)
    return json.loads(path.read_text()) if path.is_file() else {}

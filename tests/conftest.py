"""Shared fixtures: tiny models saved as local Hugging Face folders, and the shared-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tiny_models import build_tiny_bert, build_tiny_gpt2, build_tiny_llama

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache_and_one_thread(tmp_path_factory):
    """Converted models land in a temporary cache, never in the user's home. Tiny models run
    fastest on one thread (and CI machines are small): thread start-up costs more than it saves."""
    os.environ["ALIGNFLOW_CACHE"] = str(tmp_path_factory.mktemp("alignflow-cache"))
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def shared_data(relative: str) -> Path:
    """A file under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (it lives outside the repo)")
    return path

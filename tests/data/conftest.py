"""Shared fixtures of the data tests: the fixture folder and a tiny tokenizer built in code."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def make_tokenizer(chat_template: str | None = None):
    """A word-level tokenizer (one token per whitespace-separated word or punctuation mark)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "</s>", "Human", "Assistant", ":", "hello", "world", "how", "are", "you", "?", "fine"]
    backend = Tokenizer(models.WordLevel({word: index for index, word in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>")
    tokenizer.chat_template = chat_template
    return tokenizer


@pytest.fixture
def plain_tokenizer():
    return make_tokenizer()


@pytest.fixture
def chat_tokenizer():
    return make_tokenizer(CHATML_TEMPLATE)

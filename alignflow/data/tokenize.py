"""Examples -> token ids, with the truncation rules alignment needs.

The prompt and the response are tokenized separately and concatenated, so the boundary is
exact (the loss mask never bleeds into the prompt) and matches what RL generation sees: the
model continues from the prompt's tokens. When a row does not fit ``max_length``, the prompt is
cut from the left (oldest turns go first, the final question stays), then the response from the
right. A row whose prompt alone exceeds ``max_prompt_length`` after cutting is never silently
used: the cut is counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import PreTrainedTokenizerBase

from alignflow.data.types import Message

IGNORE_INDEX = -100


class Formatter(Protocol):
    def prompt_text(self, messages: list[Message], max_tokens: int | None = None) -> str: ...
    def response_text(self, response: str) -> str: ...


@dataclass(frozen=True)
class SpecialTokens:
    """What the tokenizer wraps every sequence in (BERT: [CLS] ... [SEP]; chat models: nothing)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    eos: int | None  # appended after each response so the model learns to stop

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase, append_eos: bool = True) -> SpecialTokens:
        core = tokenizer("x", add_special_tokens=False)["input_ids"]
        full = tokenizer("x", add_special_tokens=True)["input_ids"]
        start = next(i for i in range(len(full)) if full[i : i + len(core)] == core)
        prefix, suffix = tuple(full[:start]), tuple(full[start + len(core) :])
        eos = tokenizer.eos_token_id if append_eos else None
        if eos is not None and suffix and suffix[-1] == eos:
            eos = None  # the wrapper already ends with EOS
        return cls(prefix, suffix, eos)


@dataclass
class Encoded:
    """One prompt/response pair as ids; ``truncated`` records what had to be cut."""

    prompt_ids: list[int]
    response_ids: list[int]
    truncated_prompt: bool = False
    truncated_response: bool = False

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.response_ids


class PromptResponseEncoder:
    """Encodes (messages, response) rows under a length budget; shared by SFT, reward and DPO."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        formatter: Formatter,
        *,
        max_length: int,
        max_prompt_length: int,
        append_eos: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.formatter = formatter
        self.special = SpecialTokens.of(tokenizer, append_eos)
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length

    def encode_prompt(self, messages: list[Message]) -> tuple[list[int], bool]:
        """Prompt ids (with the tokenizer's prefix) within ``max_prompt_length``.

        Whole turns go first, oldest first, so the prompt still starts at a turn boundary (a user
        turn); only when the final turn alone is too long are tokens cut from its left.
        """
        budget = self.max_prompt_length - len(self.special.prefix)
        ids = self._ids(self.formatter.prompt_text(messages, max_tokens=budget))
        truncated = len(ids) > budget
        while len(ids) > budget and len(messages) > 1:
            messages = messages[1:]
            if messages[0]["role"] == "assistant" and len(messages) > 1:
                messages = messages[1:]
            ids = self._ids(self.formatter.prompt_text(messages, max_tokens=budget))
        if len(ids) > budget:
            ids = ids[len(ids) - budget :]
        return list(self.special.prefix) + ids, truncated

    def encode_response(self, response: str) -> list[int]:
        ids = self._ids(self.formatter.response_text(response))
        if self.special.eos is not None:
            ids.append(self.special.eos)
        return ids + list(self.special.suffix)

    def encode(self, messages: list[Message], response: str) -> Encoded:
        prompt_ids, cut_prompt = self.encode_prompt(messages)
        return self._fit(prompt_ids, self.encode_response(response), cut_prompt)

    def encode_pair(self, messages: list[Message], chosen: str, rejected: str) -> tuple[Encoded, Encoded]:
        """Both responses share one prompt encoding so the pair differs only in the response."""
        prompt_ids, cut_prompt = self.encode_prompt(messages)
        return (
            self._fit(prompt_ids, self.encode_response(chosen), cut_prompt),
            self._fit(prompt_ids, self.encode_response(rejected), cut_prompt),
        )

    def _fit(self, prompt_ids: list[int], response_ids: list[int], cut_prompt: bool) -> Encoded:
        overflow = len(prompt_ids) + len(response_ids) - self.max_length
        cut_response = overflow > 0
        if cut_response:
            # Keep the wrapper's closing tokens (e.g. [SEP]) and cut the response text itself.
            suffix = list(self.special.suffix)
            body = response_ids[: len(response_ids) - len(suffix)]
            response_ids = body[: max(len(body) - overflow, 1)] + suffix
        return Encoded(list(prompt_ids), response_ids, cut_prompt, cut_response)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def truncation_summary(rows: list[Encoded], what: str) -> str | None:
    """How many training rows were cut, and by which setting (None when nothing was cut)."""
    prompts = sum(r.truncated_prompt for r in rows)
    responses = sum(r.truncated_response for r in rows)
    if not prompts and not responses:
        return None
    return (f"{prompts} of {len(rows)} {what} had their prompt cut to data.max_prompt_length (oldest turns "
            f"first); {responses} had their response cut to data.max_length")


def pad_right(rows: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask``, both (len(rows), longest row)."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}

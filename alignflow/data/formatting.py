"""Render chat messages as the text a model sees: its own chat template, or a plain one.

Instruct models come with a chat template (``tokenizer.chat_template``) and must be prompted with
it. Base models (GPT-2, BERT-style encoders used as reward models) have none; for them the plain
HH-RLHF layout ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` is used, the format those models meet
in the classic RLHF datasets. A system message is rendered as a bare line in that layout.
``tldr`` is the summarisation layout of Stiennon et al. 2020 / Huang et al. 2024
(``SUBREDDIT: r/...\n\nTITLE: ...\n\nPOST: ...\n\nTL;DR:``, see :mod:`alignflow.data.tldr`): given
a token budget, the post is cut at a word boundary, keeping its start as the paper does (its code
cuts at the last newline that fits), so the header and ``TL;DR:`` always survive; the response
follows after exactly one space.
``none`` is no template: the prompt's text as it is (turns joined by blank lines) and the response
right after it, for continuation tasks (a movie review's opening words).
The EOS token is appended by the tokenizing code, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from alignflow.data.tldr import BODY_START
from alignflow.data.types import Message

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Template = Literal["auto", "chat", "plain", "tldr", "none"]
TEMPLATES: tuple[Template, ...] = ("auto", "chat", "plain", "tldr", "none")
PLAIN_LABELS = {"system": "", "user": "Human: ", "assistant": "Assistant: "}
PLAIN_GENERATION_PROMPT = "\n\nAssistant:"
TLDR_GENERATION_PROMPT = "\n\nTL;DR:"


class ChatFormatter:
    """Turns a prompt into the text the model continues from, and a response into what follows."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None = None, template: Template = "auto") -> None:
        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r}, expected one of {', '.join(TEMPLATES)}")
        if template == "tldr" and tokenizer is None:
            raise ValueError("template='tldr' needs a tokenizer to fit the post to its token budget")
        has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        if template == "chat" and not has_chat_template:
            raise ValueError("template='chat' needs a tokenizer with a chat_template; use 'plain' or 'auto'")
        uses_chat_template = template == "chat" or (template == "auto" and has_chat_template)
        self._chat_tokenizer = tokenizer if uses_chat_template else None
        self._tldr_tokenizer = tokenizer if template == "tldr" else None
        self._raw = template == "none"

    @property
    def uses_chat_template(self) -> bool:
        return self._chat_tokenizer is not None

    def prompt_text(self, messages: list[Message], max_tokens: int | None = None) -> str:
        """The rendered prompt including the generation prompt (``...<|im_start|>assistant\\n``).

        ``max_tokens``: the budget the ``tldr`` template fits the post to; other templates ignore it
        (the encoder drops whole turns instead).
        """
        if self._tldr_tokenizer is not None:
            return self._tldr_prompt("\n\n".join(m["content"] for m in messages), max_tokens)
        if self._chat_tokenizer is not None:
            return self._chat_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if self._raw:
            return "\n\n".join(m["content"] for m in messages)
        turns = "".join(f"\n\n{PLAIN_LABELS[m['role']]}{m['content']}" for m in messages)
        return turns + PLAIN_GENERATION_PROMPT

    def response_text(self, response: str) -> str:
        """The text that follows :meth:`prompt_text` (the plain layout has a space after the colon)."""
        if self._tldr_tokenizer is not None:  # generated summaries already start with one: never two
            return " " + response.lstrip()
        return response if self.uses_chat_template or self._raw else " " + response

    def _tldr_prompt(self, content: str, max_tokens: int | None) -> str:
        """``content`` + ``TL;DR:``, its post cut at the longest word boundary that fits ``max_tokens``."""
        text = content.strip() + TLDR_GENERATION_PROMPT
        body = BODY_START.search(content)
        if max_tokens is None or body is None or self._count(text) <= max_tokens:
            return text
        head, post = content[: body.end()], content[body.end():].strip()
        cuts = [0, *(i for i in range(1, len(post)) if post[i].isspace() and not post[i - 1].isspace())]
        low, high = 0, len(cuts) - 1  # binary search: the rendered length grows with the kept words
        while low < high:
            middle = (low + high + 1) // 2
            if self._count(head + post[: cuts[middle]] + TLDR_GENERATION_PROMPT) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        return head + post[: cuts[low]] + TLDR_GENERATION_PROMPT

    def _count(self, text: str) -> int:
        return len(self._tldr_tokenizer(text, add_special_tokens=False)["input_ids"])

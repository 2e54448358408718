"""Render chat messages as the text a model sees: its own chat template, or a plain one.

Instruct models come with a chat template (``tokenizer.chat_template``) and must be prompted with
it. Base models (GPT-2, BERT-style encoders used as reward models) have none; for them the plain
HH-RLHF layout ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` is used, the format those models meet
in the classic RLHF datasets. A system message is rendered as a bare line in that layout.
The EOS token is appended by the tokenizing code, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from alignflow.data.types import Message

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Template = Literal["auto", "chat", "plain"]
PLAIN_LABELS = {"system": "", "user": "Human: ", "assistant": "Assistant: "}
PLAIN_GENERATION_PROMPT = "\n\nAssistant:"


class ChatFormatter:
    """Turns a prompt into the text the model continues from, and a response into what follows."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None = None, template: Template = "auto") -> None:
        if template not in ("auto", "chat", "plain"):
            raise ValueError(f"unknown template {template!r}, expected 'auto', 'chat' or 'plain'")
        has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        if template == "chat" and not has_chat_template:
            raise ValueError("template='chat' needs a tokenizer with a chat_template; use 'plain' or 'auto'")
        uses_chat_template = template == "chat" or (template == "auto" and has_chat_template)
        self._chat_tokenizer = tokenizer if uses_chat_template else None

    @property
    def uses_chat_template(self) -> bool:
        return self._chat_tokenizer is not None

    def prompt_text(self, messages: list[Message]) -> str:
        """The rendered prompt including the generation prompt (``...<|im_start|>assistant\\n``)."""
        if self._chat_tokenizer is not None:
            return self._chat_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        turns = "".join(f"\n\n{PLAIN_LABELS[m['role']]}{m['content']}" for m in messages)
        return turns + PLAIN_GENERATION_PROMPT

    def response_text(self, response: str) -> str:
        """The text that follows :meth:`prompt_text` (the plain layout has a space after the colon)."""
        return response if self.uses_chat_template else " " + response

"""The Anthropic HH-RLHF dialogue format: ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``.

Decisions, checked against the public hh-rlhf test files:

* Turns are split ONLY on ``"\\n\\nHuman:"`` and ``"\\n\\nAssistant:"``. A ``Human:`` inside a turn
  that is not preceded by a blank line (dozens of rows) is text the model wrote and stays in it.
* Each turn's content is stripped (the space after the colon, the odd double space, trailing
  whitespace).
* Consecutive turns of the same role are merged, joined by a blank line. They occur when a
  response itself contained an ``"\\n\\nAssistant:"`` marker; merging keeps that text in the
  response (otherwise chosen and rejected would seem to have different prompts) and gives chat
  templates the alternating roles they require.
* Empty intermediate turns are kept (as empty messages); an empty FINAL response is a row issue.
* Identical chosen and rejected responses are a row issue: the pair carries no preference.
"""

from __future__ import annotations

import re

from alignflow.data.types import Message, PreferenceExample

IDENTICAL_PAIR = "chosen is identical to rejected"
PROMPTS_DIFFER = "chosen and rejected dialogues differ before the final Assistant turn"

_TURN_MARKER = re.compile(r"\n\n(Human|Assistant):")
_ROLE_OF_MARKER = {"Human": "user", "Assistant": "assistant"}


def looks_like_hh_dialogue(text: str) -> bool:
    """True when ``text`` starts with a Human turn (with or without the leading blank line)."""
    return text.lstrip().startswith("Human:")


def parse_hh_dialogue(text: str) -> list[Message]:
    """Split an HH dialogue into chat messages (Human -> user, Assistant -> assistant)."""
    if not isinstance(text, str):
        raise ValueError(f"dialogue must be a string, got {type(text).__name__}")
    parts = _TURN_MARKER.split("\n\n" + text.lstrip())
    preamble, markers, contents = parts[0], parts[1::2], parts[2::2]
    if not markers:
        raise ValueError(f"no 'Human:' or 'Assistant:' turns in the dialogue: {text[:40]!r}")
    if preamble.strip():
        raise ValueError(f"text before the first turn marker: {preamble.strip()[:40]!r}")
    if markers[0] != "Human":
        raise ValueError("dialogue starts with an Assistant turn, expected a Human turn first")
    messages: list[Message] = []
    for marker, raw_content in zip(markers, contents, strict=True):
        role, content = _ROLE_OF_MARKER[marker], raw_content.strip()
        if messages and messages[-1]["role"] == role:
            merged = "\n\n".join(part for part in (messages[-1]["content"], content) if part)
            messages[-1] = {"role": role, "content": merged}
        else:
            messages.append({"role": role, "content": content})
    return messages


def split_final_response(messages: list[Message]) -> tuple[list[Message], str | None]:
    """``(prompt, response)``: the turns before a final assistant turn and that turn's text.

    A dialogue that ends with a user turn is all prompt, and its response is None.
    """
    if messages and messages[-1]["role"] == "assistant":
        return messages[:-1], messages[-1]["content"]
    return messages, None


def hh_pair_to_preference(chosen_text: str, rejected_text: str, source: str) -> PreferenceExample:
    """One HH row: two dialogues that share every turn but the final Assistant response."""
    chosen_prompt, chosen = hh_prompt_and_response(chosen_text, "chosen")
    rejected_prompt, rejected = hh_prompt_and_response(rejected_text, "rejected")
    if chosen_prompt != rejected_prompt:
        raise ValueError(PROMPTS_DIFFER)
    if chosen == rejected:
        raise ValueError(IDENTICAL_PAIR)
    return PreferenceExample(prompt=chosen_prompt, chosen=chosen, rejected=rejected, source=source)


def hh_prompt_and_response(text: str, name: str = "dialogue") -> tuple[list[Message], str]:
    """The turns before the final Assistant turn and its non-empty text; errors start with ``name``."""
    try:
        prompt, response = split_final_response(parse_hh_dialogue(text))
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err
    if response is None:
        raise ValueError(f"{name} dialogue ends with a Human turn, expected a final Assistant turn")
    if not response:
        raise ValueError(f"{name} response (the final Assistant turn) is empty")
    return prompt, response

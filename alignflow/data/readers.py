"""Read any supported source into canonical examples, reporting every malformed row.

The format is recognised per row, so one reader covers the common public layouts:

* preference: HH ``{chosen, rejected}`` dialogues; ``{prompt, chosen, rejected}`` where the prompt
  is a string or a message list and chosen/rejected are strings or message lists (a list is a
  conversation whose final assistant message is the response; UltraFeedback-binarized style);
  ``{chosen, rejected}`` as two message lists that share every message but the last.
* SFT: ``{messages}`` (the final assistant message is the response); ``{prompt, response}``,
  ``{prompt, completion}``, ``{question, answer}``; alpaca ``{instruction, input, output}``
  with an optional ``history`` of ``[user, assistant]`` pairs (LIMA); preference rows train on
  their chosen response.
* summarisation (Stiennon et al. 2020, see :mod:`alignflow.data.tldr`): a comparison row
  ``{info, summaries, choice}`` is a preference pair, an SFT row on its preferred summary, or a
  prompt with that summary as reference (one prompt per post: later rows of the same ``info.id``
  are counted in :attr:`ReadResult.duplicates`, not read); ``{subreddit, title, post, summary}``
  is an SFT row, or a prompt with its summary as reference.
* prompts: a bare JSON string; ``{prompt}`` / ``{question}`` / ``{instruction, input}`` (and the
  red-team CSV columns ``forbidden_prompt`` / ``behavior``); an HH dialogue up to its final
  Assistant turn; the prompt of any SFT or preference row. A ``reference`` / ``answer`` /
  SFT response becomes :attr:`PromptExample.reference`.

Field names are matched case-insensitively (CSV headers such as TruthfulQA's ``Question``). A
string prompt in HH form (``"\\n\\nHuman: ...\\n\\nAssistant:"``) is parsed into messages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TypeVar

from alignflow.data.hh import (
    IDENTICAL_PAIR,
    PROMPTS_DIFFER,
    hh_pair_to_preference,
    hh_prompt_and_response,
    looks_like_hh_dialogue,
    parse_hh_dialogue,
    split_final_response,
)
from alignflow.data.sources import DataError, RawRow, iter_rows
from alignflow.data.tldr import (
    comparison_to_preference,
    comparison_to_prompt,
    comparison_to_sft,
    is_comparison,
    is_tldr_sft,
    post_id,
    tldr_sft_prompt,
    tldr_summary,
)
from alignflow.data.types import Message, PreferenceExample, PromptExample, ReadResult, RowIssue, SFTExample

Kind = Literal["sft", "preference", "prompt"]
KINDS: tuple[Kind, ...] = ("preference", "sft", "prompt")  # also the tie-break order of detect_kind
ROLES = ("system", "user", "assistant")
PROMPT_FIELDS = ("prompt", "question", "forbidden_prompt", "behavior")
SFT_RESPONSE_FIELDS = ("response", "completion", "output")  # an SFT row when auto-detecting the kind
RESPONSE_FIELDS = (*SFT_RESPONSE_FIELDS, "answer")  # "answer" alone reads as a reference (GSM8K) in auto mode
REFERENCE_FIELDS = ("reference", "answer", "response", "completion", "output", "best answer")

Example = TypeVar("Example", SFTExample, PreferenceExample, PromptExample)
RowCallback = Callable[[str, RawRow], None]


def read_preferences(
    source: str | Path, *, strict: bool = False, max_samples: int | None = None, on_row: RowCallback | None = None
) -> ReadResult[PreferenceExample]:
    """Preference pairs from ``source``; see the module docstring for the accepted layouts."""
    return _read(source, row_to_preference, strict=strict, max_samples=max_samples, on_row=on_row)


def read_sft(
    source: str | Path, *, strict: bool = False, max_samples: int | None = None, on_row: RowCallback | None = None
) -> ReadResult[SFTExample]:
    """Prompt/response pairs from ``source``; see the module docstring for the accepted layouts."""
    return _read(source, row_to_sft, strict=strict, max_samples=max_samples, on_row=on_row)


def read_prompts(
    source: str | Path, *, strict: bool = False, max_samples: int | None = None, on_row: RowCallback | None = None
) -> ReadResult[PromptExample]:
    """Prompts (with an optional reference) from ``source``, one per summarised post; see the module docstring."""
    return _read(source, row_to_prompt, strict=strict, max_samples=max_samples, on_row=on_row, key=_post_key)


def read_examples(
    source: str | Path, kind: Kind, *, strict: bool = False, max_samples: int | None = None,
    on_row: RowCallback | None = None,
) -> ReadResult[Any]:
    """The reader for ``kind``: one entry point for code that gets the kind from the user."""
    readers = {"preference": read_preferences, "sft": read_sft, "prompt": read_prompts}
    if kind not in readers:
        raise ValueError(f"unknown kind {kind!r}, expected one of {', '.join(KINDS)}")
    return readers[kind](source, strict=strict, max_samples=max_samples, on_row=on_row)


def detect_kind(source: str | Path, *, sample_rows: int = 100) -> Kind:
    """The kind most of the first recognisable rows have (``{question, answer}`` counts as prompts)."""
    rows = [row for _, row in islice(iter_rows(source), sample_rows)]
    if not rows:
        raise DataError(f"{source}: no rows: it is empty, or holds only blank lines (or a CSV header); "
                        "point it at a file with data")
    kinds = Counter(kind for row in rows if (kind := row_kind(row)) is not None)
    if not kinds:
        raise DataError(
            f"{source}: none of the first {len(rows)} rows looks like SFT, preference or prompt data; "
            "pass the kind explicitly to see why each row is rejected"
        )
    return max(KINDS, key=lambda kind: (kinds[kind], -KINDS.index(kind)))


def row_kind(row: RawRow) -> Kind | None:
    """What a raw row holds, judged by its fields only (malformed values are found when reading)."""
    if isinstance(row, str):
        return "prompt"
    if not isinstance(row, dict):
        return None
    fields = _lower_keys(row)
    if ("chosen" in fields and "rejected" in fields) or is_comparison(fields):
        return "preference"
    if is_tldr_sft(fields):
        return "sft"
    if "messages" in fields:
        messages = fields["messages"]
        ends_with_response = isinstance(messages, list) and bool(messages) and _role(messages[-1]) == "assistant"
        return "sft" if ends_with_response else "prompt"
    has_prompt = any(name in fields for name in (*PROMPT_FIELDS, "instruction"))
    if has_prompt and any(name in fields for name in SFT_RESPONSE_FIELDS):
        return "sft"
    return "prompt" if has_prompt else None


def row_to_preference(row: RawRow, source: str) -> PreferenceExample:
    """One preference pair, or ValueError saying why the row is not one."""
    fields = _object(row, "chosen, rejected")
    if is_comparison(fields):
        return comparison_to_preference(fields, source)
    _require(fields, "chosen", "rejected")
    if "prompt" in fields:
        prompt = _prompt(fields)
        chosen = _response(fields, "chosen", prompt)
        rejected = _response(fields, "rejected", prompt)
    elif isinstance(fields["chosen"], str) and isinstance(fields["rejected"], str):
        return hh_pair_to_preference(fields["chosen"], fields["rejected"], source)
    else:
        prompt, chosen = _conversation(fields, "chosen")
        rejected_prompt, rejected = _conversation(fields, "rejected")
        if prompt != rejected_prompt:
            raise ValueError(PROMPTS_DIFFER)
    if chosen.strip() == rejected.strip():
        raise ValueError(IDENTICAL_PAIR)
    return PreferenceExample(prompt=prompt, chosen=chosen, rejected=rejected, source=source)


def row_to_sft(row: RawRow, source: str) -> SFTExample:
    """One prompt/response pair, or ValueError saying why the row is not one."""
    fields = _object(row, "messages, or a prompt and a response")
    if is_comparison(fields):
        return comparison_to_sft(fields, source)
    if is_tldr_sft(fields):
        return SFTExample(prompt=tldr_sft_prompt(fields), response=tldr_summary(fields), source=source)
    if "messages" in fields:
        prompt, response = _conversation(fields, "messages")
    elif "chosen" in fields:  # a preference row: supervised fine-tuning on the preferred response
        if "prompt" in fields:
            prompt = _prompt(fields)
            response = _response(fields, "chosen", prompt)
        elif isinstance(fields["chosen"], str):
            prompt, response = hh_prompt_and_response(fields["chosen"], "chosen")
        else:
            prompt, response = _conversation(fields, "chosen")
    else:
        name = next((name for name in RESPONSE_FIELDS if name in fields), None)
        if name is None:
            raise ValueError(f"no response field: expected messages, chosen or one of {', '.join(RESPONSE_FIELDS)} "
                             f"(fields: {_names(fields)})")
        prompt, response = _prompt(fields), _text(fields, name)
    return SFTExample(prompt=prompt, response=response, source=source)


def row_to_prompt(row: RawRow, source: str) -> PromptExample:
    """One prompt with its optional reference, or ValueError saying why the row is not one."""
    if isinstance(row, str):
        return PromptExample(prompt=_prompt_from_text(row, "row"), source=source)
    fields = _object(row, "a prompt field, or a JSON string")
    if is_comparison(fields):
        return comparison_to_prompt(fields, source)
    if is_tldr_sft(fields):
        return PromptExample(prompt=tldr_sft_prompt(fields), reference=tldr_summary(fields), source=source)
    if "messages" in fields:
        prompt, reference = _prompt_part(_messages(fields, "messages"), "messages")
    elif "chosen" in fields and "prompt" not in fields:  # an HH dialogue or a conversation
        chosen = fields["chosen"]
        messages = _hh_messages(chosen, "chosen") if isinstance(chosen, str) else _messages(fields, "chosen")
        prompt, _ = _prompt_part(messages, "chosen")
        reference = None
    else:
        prompt, reference = _prompt(fields), _optional_reference(fields)
    return PromptExample(prompt=prompt, reference=reference or None, source=source)


def _prompt_part(messages: list[Message], name: str) -> tuple[list[Message], str | None]:
    """The messages before a final assistant message (all of them when there is none) and its text."""
    prompt, response = split_final_response(messages)
    if not prompt:
        raise ValueError(f"field '{name}' has no message before the final assistant message")
    return prompt, response


def _read(
    source: str | Path, convert: Callable[[RawRow, str], Example], *, strict: bool, max_samples: int | None,
    on_row: RowCallback | None, key: Callable[[RawRow], Hashable | None] | None = None,
) -> ReadResult[Example]:
    """``key``: rows whose key an earlier good row had are counted as duplicates, not read."""
    result: ReadResult[Example] = ReadResult()
    seen: set[Hashable] = set()
    for location, row in iter_rows(source):
        if max_samples is not None and len(result.examples) >= max_samples:
            break
        result.rows_read += 1
        if on_row is not None:
            on_row(location, row)
        try:
            if isinstance(row, Exception):
                raise ValueError(str(row))
            example = convert(row, location)
        except ValueError as err:
            issue = RowIssue(source=location, reason=str(err))
            if strict:
                raise DataError(str(issue)) from err
            result.issues.append(issue)
            continue
        row_key = key(row) if key is not None else None
        if row_key is not None:
            if row_key in seen:
                result.duplicates += 1
                continue
            seen.add(row_key)
        result.examples.append(example)
    return result


def _post_key(row: RawRow) -> str | None:
    return post_id(_lower_keys(row)) if isinstance(row, dict) else None


def _lower_keys(row: dict[str, Any]) -> dict[str, Any]:
    return {str(key).strip().lower(): value for key, value in row.items()}


def _object(row: RawRow, expected: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ValueError(f"row is a JSON {_type_name(row)}, expected an object with {expected}")
    return _lower_keys(row)


def _require(fields: dict[str, Any], *names: str) -> None:
    for name in names:
        if fields.get(name) is None:
            raise ValueError(f"missing field '{name}' (fields: {_names(fields)})")


def _names(fields: dict[str, Any]) -> str:
    return ", ".join(fields) or "none"


def _type_name(value: object) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, int | float) else type(value).__name__)


def _text(fields: dict[str, Any], name: str) -> str:
    """A required, non-blank string field."""
    _require(fields, name)
    value = fields[name]
    if not isinstance(value, str):
        raise ValueError(f"field '{name}' must be a string, got a {_type_name(value)}")
    if not value.strip():
        raise ValueError(f"field '{name}' is empty")
    return value


def _prompt(fields: dict[str, Any]) -> list[Message]:
    """The prompt messages of a row that has a prompt field (or alpaca instruction)."""
    name = next((name for name in PROMPT_FIELDS if name in fields), None)
    if name is None and "instruction" in fields:
        return _alpaca_prompt(fields)
    if name is None:
        raise ValueError(f"no prompt field: expected one of {', '.join((*PROMPT_FIELDS, 'instruction'))} "
                         f"(fields: {_names(fields)})")
    if isinstance(fields[name], list):
        return _messages(fields, name)
    return _prompt_from_text(_text(fields, name), f"field '{name}'")


def _prompt_from_text(text: str, what: str) -> list[Message]:
    """A user message, or the messages of an HH-style prompt (its empty final Assistant turn dropped)."""
    if not text.strip():
        raise ValueError(f"{what} is empty")
    if not looks_like_hh_dialogue(text):
        return [{"role": "user", "content": text}]
    messages = _hh_messages(text, what)
    if messages[-1] == {"role": "assistant", "content": ""}:
        messages.pop()
    return messages


def _hh_messages(text: str, what: str) -> list[Message]:
    try:
        return parse_hh_dialogue(text)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from err


def _alpaca_prompt(fields: dict[str, Any]) -> list[Message]:
    instruction = _text(fields, "instruction")
    extra_input = fields.get("input") or ""
    if not isinstance(extra_input, str):
        raise ValueError(f"field 'input' must be a string, got a {_type_name(extra_input)}")
    content = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    return [*_alpaca_history(fields.get("history") or []), {"role": "user", "content": content}]


def _alpaca_history(history: Any) -> list[Message]:
    if not isinstance(history, list):
        raise ValueError(f"field 'history' must be a list of [user, assistant] pairs, got a {_type_name(history)}")
    messages: list[Message] = []
    for number, pair in enumerate(history, start=1):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(text, str) for text in pair)):
            raise ValueError(f"field 'history' item {number} must be a [user, assistant] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return messages


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else None


def _messages(fields: dict[str, Any], name: str) -> list[Message]:
    """A non-empty list of ``{role, content}`` messages (extra keys such as ``name`` are dropped)."""
    _require(fields, name)
    value = fields[name]
    if not isinstance(value, list) or not value:
        raise ValueError(f"field '{name}' must be a non-empty list of {{role, content}} messages")
    messages: list[Message] = []
    for number, message in enumerate(value, start=1):
        role = _role(message)
        if role not in ROLES:
            raise ValueError(f"field '{name}' message {number} has role {role!r}, expected one of {', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str):
            raise ValueError(f"field '{name}' message {number} content must be a string, got a {_type_name(content)}")
        messages.append({"role": role, "content": content})
    if not any(message["content"].strip() for message in messages):
        raise ValueError(f"field '{name}' is empty")
    return messages


def _conversation(fields: dict[str, Any], name: str) -> tuple[list[Message], str]:
    """``(prompt, response)`` of a message list that ends with a non-empty assistant message."""
    prompt, response = _prompt_part(_messages(fields, name), name)
    if response is None:
        raise ValueError(f"field '{name}' does not end with an assistant message")
    if not response.strip():
        raise ValueError(f"field '{name}' final assistant message is empty")
    return prompt, response


def _response(fields: dict[str, Any], name: str, prompt: list[Message]) -> str:
    """A response given as text, or as messages that repeat the prompt (or not) and end with it."""
    if not isinstance(fields.get(name), list):
        return _text(fields, name)
    earlier, response = split_final_response(_messages(fields, name))
    if response is None:
        raise ValueError(f"field '{name}' does not end with an assistant message")
    if earlier and earlier != prompt:
        raise ValueError(f"field '{name}' messages before the final one differ from the prompt")
    if not response.strip():
        raise ValueError(f"field '{name}' final assistant message is empty")
    return response


def _optional_reference(fields: dict[str, Any]) -> str | None:
    name = next((name for name in REFERENCE_FIELDS if fields.get(name) is not None), None)
    if name is None:
        return None
    value = fields[name]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"field '{name}' must be a string or a number, got a {_type_name(value)}")
    return str(value)

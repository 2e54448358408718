"""Final-answer extraction and the exact-match reward shared by the verifiable tasks.

A small policy answers in free form ("23 + 58 = 81", "The answer is **81**.", "\\boxed{81}",
"#### 1,200"), so the extractor tries explicit answer markers first and falls back to the last
number in the text. Numbers are compared as exact decimals, so "81.0", "81" and "$81" match.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from alignflow.data.types import Message

# A number: thousands groups ("1,234,567") or plain digits, an optional decimal part, an optional sign.
NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_NUMBER = re.compile(NUMBER)
# "answer is 42", "Answer: 42", "answer = 42", "**Answer:** $42", "final answer is \(42\)"
_ANSWER = re.compile(r"\banswer(?:\s+is)?[\s:=*$\\(]*(" + NUMBER + ")", re.IGNORECASE)
_HASHES = re.compile(r"####\s*\$?\s*(" + NUMBER + ")")
_EQUALS = re.compile(r"=\s*\$?\s*(" + NUMBER + ")")
_BOXED = "\\boxed{"


def numbers(text: str) -> list[str]:
    """Every number in ``text``; a minus sign counts only where it cannot be subtraction ("5-3" is 5, 3)."""
    found = []
    for match in _NUMBER.finditer(text):
        value, start = match.group(), match.start()
        if value.startswith("-") and start > 0 and (text[start - 1].isalnum() or text[start - 1] in ").]"):
            value = value[1:]
        found.append(value)
    return found


def boxed_content(text: str) -> str | None:
    """What is inside the last ``\\boxed{...}`` (nested braces allowed), or None."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(_BOXED)
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i]
    return None


def extract_answer(response: str) -> str | None:
    """The final answer in a free-form response, as written (commas kept), or None.

    In order: the last ``\\boxed{}``, the last "answer is / answer: / answer =", the last
    "#### N" (GSM8K style), then the last number anywhere ("... = 42").
    """
    boxed = boxed_content(response)
    if boxed is not None and (inside := numbers(boxed)):
        return inside[-1]
    for pattern in (_ANSWER, _HASHES):
        if marked := list(pattern.finditer(response)):
            return _worked_out(marked[-1].group(1), response[marked[-1].end():])
    found = numbers(response)
    return found[-1] if found else None


def _worked_out(answer: str, rest: str) -> str:
    """"The answer is 23 + 58 = 81": the marker is followed by a sum, not the result; take the last
    "= N" of the same clause (up to a newline or a full stop) when there is one."""
    clause = re.split(r"\n|\.(?:\s|$)", rest, maxsplit=1)[0]
    results = _EQUALS.findall(clause)
    return results[-1] if results else answer


def reference_answer(reference: str) -> str:
    """The gold answer in a reference: the text after the last ``####`` (GSM8K), else all of it."""
    return reference.rsplit("####", 1)[-1].strip() if "####" in reference else reference.strip()


def parse_number(text: str | None) -> Decimal | None:
    """``"1,200"``, ``"$18.50"``, ``"-3"``, ``"81.0"`` -> an exact Decimal; None when not a number."""
    if text is None:
        return None
    cleaned = text.strip().replace(",", "").lstrip("$").rstrip(".%")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def is_correct(response: str, reference: str) -> bool:
    """Whether the response's final answer equals the reference's, as numbers."""
    gold = parse_number(reference_answer(reference))
    if gold is None:
        raise ValueError(f"reference {reference!r} has no numeric answer")
    return parse_number(extract_answer(response)) == gold


def exact_match(prompts: list[list[Message]], responses: list[str], metadata: dict[str, list]) -> list[float]:
    """1.0 when a response's final answer equals ``metadata["reference"]`` (a number, or text ending
    in ``#### N``), else 0.0. A row without a reference is an error, not a zero."""
    references = metadata.get("reference") or [None] * len(responses)
    scores = []
    for response, reference in zip(responses, references, strict=True):
        if reference is None:
            raise ValueError("no reference answer (write prompts with a `reference` field)")
        scores.append(1.0 if is_correct(response, str(reference)) else 0.0)
    return scores

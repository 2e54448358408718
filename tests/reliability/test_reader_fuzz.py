"""Fuzzing the data readers: any bytes give rows or a located DataError, and no row goes missing.

Every reader layout (prompt lists, SFT, preference, HH dialogues, chat messages, a JSON list, CSV),
plain and gzip-compressed, gets files that mix well-formed rows, JSON of the wrong shape, raw bytes,
blank lines and stray bytes (or is any byte string at all). What counts as a row is worked out
here from the bytes, independently of the reader:

* JSONL: a line (split at \\n, \\r or \\r\\n) that is not whitespace only, after a leading BOM.
* a JSON list (a ``.json`` file whose first non-blank character is ``[``): its items, or a
  DataError when the file is not one JSON list.
* CSV: a record as the csv module parses it (quoted fields may span lines) that is not a blank
  line (one whitespace-only field), after the first such record, the header; a header that is
  not valid UTF-8 is a DataError.

Run with ``--hypothesis-show-statistics`` to see how many examples each test ran.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alignflow.data import DataError, detect_kind, read_preferences, read_prompts, read_sft
from alignflow.data.prepare import canonical_row

READERS = (read_prompts, read_sft, read_preferences)
FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
BOM = b"\xef\xbb\xbf"
PLACEHOLDER = "\ue000"  # a private-use character that the text strategies never draw
INVALID_UTF8 = (b"\xff", b"\x80", b"\xc3", b"\xe9", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf")
ERROR = "DataError"  # what the oracle expects when the source as a whole is unreadable

# Row texts: anything printable or not, but no lone surrogates and no private-use characters.
TEXT = st.text(st.characters(exclude_categories=("Cs", "Co")), min_size=1, max_size=12)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=8)  # lone surrogates included
FIELD_NAMES = ("prompt", "Prompt", "response", "chosen", "rejected", "messages", "role", "content", "question",
               "answer", "instruction", "input", "history", "reference", "completion", "output")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELD_NAMES) | ANY_TEXT, inner,
                                                                 max_size=4),
    max_leaves=8,
)


def hh(prompt: str, response: str) -> str:
    return f"\n\nHuman: {prompt}\n\nAssistant: {response}"


def message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


ROWS = {  # a well-formed row of each layout (the readers may still reject a few, e.g. identical pairs)
    "prompt": st.one_of(TEXT, st.builds(lambda p: {"prompt": p}, TEXT),
                        st.builds(lambda p, r: {"question": p, "answer": r}, TEXT, TEXT)),
    "sft": st.builds(lambda p, r: {"prompt": p, "response": r}, TEXT, TEXT),
    "preference": st.builds(lambda p, c, r: {"prompt": p, "chosen": c, "rejected": r}, TEXT, TEXT, TEXT),
    "hh": st.builds(lambda p, c, r: {"chosen": hh(p, c), "rejected": hh(p, r)}, TEXT, TEXT, TEXT),
    "chat": st.builds(lambda s, p, r: {"messages": [message("system", s), message("user", p),
                                                    message("assistant", r)]}, TEXT, TEXT, TEXT),
}
# (file name, layout of its rows); CSV rows are prompts with an id and a reference.
FORMATS = [(f"{layout}.jsonl", layout) for layout in ROWS] + [("sft.json", "sft"), ("prompts.csv", "csv")]
CSV_HEADER = ["id", "prompt", "reference"]
CSV_ROWS = st.lists(TEXT, min_size=3, max_size=3)


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes that are not UTF-8


def json_line(value: object, ascii_only: bool) -> bytes:
    return encode(json.dumps(value, ensure_ascii=ascii_only))


def csv_bytes(records: list[list[str]], line_end: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator=line_end).writerows(records)
    return encode(out.getvalue())


@st.composite
def jsonl_file(draw: st.DrawFn, layout: str) -> bytes:
    line = st.one_of(
        st.builds(json_line, ROWS[layout], st.booleans()),
        st.builds(json_line, JSON_VALUES, st.booleans()),
        st.binary(max_size=16),
        st.sampled_from([b"", b"  ", b"\t", b"\x0c", b"\xc2\x85"]),
    )
    lines = draw(st.lists(line, max_size=8))
    return draw(st.sampled_from([b"", BOM])) + draw(st.sampled_from([b"\n", b"\r\n", b"\r"])).join(lines)


@st.composite
def json_list_file(draw: st.DrawFn, layout: str) -> bytes:
    items = draw(st.lists(ROWS[layout] | JSON_VALUES, max_size=6))
    return json_line(items, draw(st.booleans()))


@st.composite
def csv_file(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from([CSV_HEADER, ["prompt"]]) | st.lists(st.sampled_from(FIELD_NAMES) | ANY_TEXT,
                                                                         max_size=3))
    records = draw(st.lists(CSV_ROWS | st.lists(ANY_TEXT, max_size=4), max_size=6))
    return csv_bytes([header, *records], draw(st.sampled_from(["\n", "\r\n"])))


@st.composite
def with_stray_bytes(draw: st.DrawFn, content: st.SearchStrategy[bytes]) -> bytes:
    data = draw(content)
    for position, stray in draw(st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=3)),
                                         max_size=3)):
        cut = position % (len(data) + 1)
        data = data[:cut] + stray + data[cut:]
    return data


def structured_file(name: str, layout: str) -> st.SearchStrategy[bytes]:
    if layout == "csv":
        return csv_file()
    return json_list_file(layout) if name.endswith(".json") else jsonl_file(layout)


def decoded(data: bytes) -> str:
    """The text as the readers see it: BOM dropped, each undecodable byte kept as a lone surrogate.

    A file that is only the start of a BOM reads as empty: Python's utf-8-sig stream decoder drops it.
    """
    if BOM.startswith(data):
        return ""
    return data.removeprefix(BOM).decode("utf-8", "surrogateescape")


def has_surrogate(text: str) -> bool:
    return re.search(r"[\ud800-\udfff]", text) is not None


def expected_rows(name: str, data: bytes) -> int | str:
    """How many rows the bytes hold (see the module docstring), or ERROR."""
    text = decoded(data)
    if name.endswith(".csv"):
        records = [fields for fields in csv.reader(io.StringIO(text, newline=""))
                   if len(fields) > 1 or "".join(fields).strip()]
        if records and has_surrogate("".join(records[0])):
            return ERROR
        return max(len(records) - 1, 0)
    if name.endswith(".json") and text.lstrip()[:1] == "[":
        try:
            items = json.loads(text)
        except (ValueError, RecursionError):
            return ERROR
        return len(items) if isinstance(items, list) else ERROR
    return sum(1 for line in re.split(r"\r\n|\r|\n", text) if line.strip())


def write(folder: Path, name: str, data: bytes, packed: bool) -> Path:
    path = folder / (f"{name}.gz" if packed else name)
    path.write_bytes(gzip.compress(data, mtime=0) if packed else data)
    return path


def check_error(err: DataError, path: Path) -> None:
    message = str(err)
    assert message.startswith(f"{path}"), message
    assert "\n" not in message, message


def check_read(read: Callable, path: Path, expected: int | str) -> None:
    """``read(path)``: exactly the expected rows, each kept or reported at its own path:line."""
    try:
        result = read(path)
    except DataError as err:
        assert expected == ERROR, f"{err} (expected {expected} rows)"
        event(f"{read.__name__}: DataError")
        check_error(err, path)
        return
    assert expected != ERROR
    assert len(result.examples) + len(result.issues) == result.rows_read == expected
    event(f"{read.__name__}: {'some' if result.examples else 'no'} rows kept, "
          f"{'some' if result.issues else 'no'} rows reported")
    locations = [example.source for example in result.examples] + [issue.source for issue in result.issues]
    assert len(set(locations)) == len(locations)
    assert all(re.fullmatch(rf"{re.escape(str(path))}:#?[1-9]\d*", location) for location in locations), locations
    for example in result.examples:  # what is kept can be written out as UTF-8 (as prepare does)
        json.dumps(canonical_row(example), ensure_ascii=False).encode("utf-8")


def check_detect_kind(path: Path, expected: int | str) -> None:
    try:
        detect_kind(path)
    except DataError as err:
        check_error(err, path)
        assert expected != 0 or "no rows" in str(err), str(err)
    else:
        assert expected not in (0, ERROR)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("name, layout", FORMATS, ids=[name for name, _ in FORMATS])
@FUZZ
@given(draw=st.data())
def test_any_bytes_give_every_row_kept_or_reported_or_one_located_error(folder, name, layout, packed, draw):
    data = draw.draw(st.binary(max_size=64) | with_stray_bytes(structured_file(name, layout)), label="file bytes")
    path = write(folder, name, data, packed)
    expected = expected_rows(name, data)
    for read in READERS:
        check_read(read, path, expected)
    check_detect_kind(path, expected)


READ_LAYOUT = {"prompt": read_prompts, "sft": read_sft, "preference": read_preferences, "hh": read_preferences,
               "chat": read_sft, "csv": read_prompts}


def with_placeholder(value: object) -> object:
    """``value`` with PLACEHOLDER appended to its first string (every row layout has one)."""
    if isinstance(value, str):
        return value + PLACEHOLDER
    if isinstance(value, list):
        return [with_placeholder(value[0]), *value[1:]]
    key = next(iter(value))
    return {**value, key: with_placeholder(value[key])}


def file_text(name: str, rows: list) -> str:
    if name.endswith(".csv"):
        return csv_bytes([CSV_HEADER, *rows], "\r\n").decode()  # "\r\n": the writer then quotes a field with "\r"
    if name.endswith(".json"):
        return json.dumps(rows, ensure_ascii=False)
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def outcomes(result) -> dict[str, object]:
    """What became of each row, by its location within the file (``line`` or ``#item``)."""
    kept = {example.source.rsplit(":", 1)[1]: dataclasses.replace(example, source="") for example in result.examples}
    return kept | {issue.source.rsplit(":", 1)[1]: issue.reason for issue in result.issues}


def row_order(location: str) -> int:
    return int(location.lstrip("#"))


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("name, layout", FORMATS, ids=[name for name, _ in FORMATS])
@FUZZ
@given(draw=st.data(), bad=st.sampled_from(INVALID_UTF8))
def test_a_bad_byte_costs_only_the_row_it_is_in(folder, name, layout, packed, draw, bad):
    rows = draw.draw(st.lists(CSV_ROWS if layout == "csv" else ROWS[layout], min_size=1, max_size=6), label="rows")
    index = draw.draw(st.integers(0, len(rows) - 1), label="row with the bad byte")
    marked = [*rows[:index], with_placeholder(rows[index]), *rows[index + 1:]]
    read = READ_LAYOUT[layout]
    clean = outcomes(read(write(folder, f"clean-{name}", encode(file_text(name, rows)), packed)))
    dirty_bytes = encode(file_text(name, marked)).replace(PLACEHOLDER.encode(), bad)
    dirty = outcomes(read(write(folder, name, dirty_bytes, packed)))
    bad_row = sorted(clean, key=row_order)[index]
    assert dirty.keys() == clean.keys()
    assert str(dirty.pop(bad_row)).startswith(f"not valid UTF-8: byte 0x{bad[0]:02x}")
    assert dirty == {location: outcome for location, outcome in clean.items() if location != bad_row}


def large_jsonl(head: bytes, seed: int, tail: bytes) -> bytes:
    """Fuzzed lines around rows of random hex: over the 8 KiB a text stream decodes at once, hard to compress."""
    filler = random.Random(seed)
    rows = [json_line({"prompt": filler.randbytes(700).hex()}, True) for _ in range(30)]
    return head + b"\n" + b"\n".join(rows) + b"\n" + tail


LARGE_JSONL = {"head": jsonl_file("prompt"), "seed": st.integers(0, 2**32), "tail": jsonl_file("prompt")}


@FUZZ
@given(cut=st.integers(0, 10**6), **LARGE_JSONL)
def test_a_truncated_gzip_keeps_exactly_the_rows_before_the_cut_and_says_where(folder, cut, head, seed, tail):
    data = large_jsonl(head, seed, tail)
    full = outcomes(read_prompts(write(folder, "full.jsonl", data, packed=False)))
    packed = gzip.compress(data, mtime=0)
    path = folder / "cut.jsonl.gz"
    path.write_bytes(packed[: 1 + cut % (len(packed) - 1)])  # an empty file is a gzip file with no rows
    try:
        result = read_prompts(path)
    except DataError as err:
        check_error(err, path)
        assert f"{path}: cannot read the file: " in str(err)
        event("cut before the first line: DataError")
        return
    *_, stop = result.issues
    assert stop.reason.startswith("the file ends early or is corrupt after line")
    stop_line = int(stop.source.rsplit(":", 1)[1])
    before = outcomes(dataclasses.replace(result, issues=result.issues[:-1]))
    assert before == {line: outcome for line, outcome in full.items() if int(line) < stop_line}
    event(f"rows before the cut kept: {'some' if result.examples else 'none'}")


@FUZZ
@given(position=st.integers(0, 10**6), mask=st.integers(1, 255), **LARGE_JSONL)
def test_a_corrupt_gzip_gives_rows_and_a_located_reason_or_one_error(folder, position, mask, head, seed, tail):
    packed = bytearray(gzip.compress(large_jsonl(head, seed, tail), mtime=0))
    packed[position % len(packed)] ^= mask
    path = folder / "corrupt.jsonl.gz"
    path.write_bytes(bytes(packed))
    try:
        result = read_prompts(path)
    except DataError as err:
        check_error(err, path)
        return
    assert len(result.examples) + len(result.issues) == result.rows_read
    locations = [example.source for example in result.examples] + [issue.source for issue in result.issues]
    assert all(re.fullmatch(rf"{re.escape(str(path))}:[1-9]\d*", location) for location in locations), locations

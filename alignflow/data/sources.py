"""Raw rows from a data source, each with the location that error messages will name.

A source is a ``.jsonl`` / ``.json`` / ``.csv`` file (optionally ``.gz``), a folder of such files
(not recursive, sorted by name), a glob pattern of such files (``dir/batch1*.jsonl``), a Hugging
Face ``save_to_disk`` folder, or a hub dataset name
(``Anthropic/hh-rlhf[:split]``, split ``train`` by default). The last two need ``datasets``.
Rows are yielded as ``("path:line", row)``; JSON-list items as ``"path:#index"`` (1-based). A
line that cannot be parsed is yielded as an exception so the reader can report it and go on.

Text is decoded line by line: a line (or CSV record, or JSON-list item) that is not valid UTF-8,
or that holds an escaped lone surrogate, is such a row and the rest of the file is kept. A file
that cannot be read past some line (a truncated or corrupt ``.gz``) keeps the rows before it and
ends with one such row saying so; a file with no readable line at all is a :class:`DataError`.
"""

from __future__ import annotations

import csv
import glob
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

RawRow = dict[str, Any] | list[Any] | str | int | float | bool | None | Exception

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # never valid text: an undecodable byte or a lone \u escape
_READ_ERRORS = (OSError, EOFError, zlib.error)  # unreadable, not gzip, truncated, corrupt


class DataError(ValueError):
    """A source that cannot be read, or (in strict mode) a malformed row."""


def iter_rows(source: str | Path) -> Iterator[tuple[str, RawRow]]:
    """Every raw row of ``source`` with its location, in file order."""
    path = Path(source)
    if path.is_dir():
        yield from _iter_folder(path)
    elif path.is_file():
        yield from _iter_file(path)
    elif isinstance(source, str) and set("*?[") & set(source) and (matches := sorted(glob.glob(source))):
        for match in matches:
            yield from _iter_file(Path(match))
    elif isinstance(source, str) and _HUB_NAME.match(source) and not _data_suffix(path):
        yield from _iter_hub(source)
    else:
        raise DataError(f"{source}: no such file or folder")


def _data_suffix(path: Path) -> str:
    """``.jsonl`` / ``.json`` / ``.csv`` for ``path`` (looking through ``.gz``), else ``""``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes and suffixes[-1] in SUPPORTED_SUFFIXES else ""


def _iter_folder(folder: Path) -> Iterator[tuple[str, RawRow]]:
    if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():
        yield from _iter_saved_dataset(folder)
        return
    files = sorted(p for p in folder.iterdir() if p.is_file() and _data_suffix(p))
    if not files:
        raise DataError(f"{folder}: no {'/'.join(SUPPORTED_SUFFIXES)} files (optionally .gz) in this folder")
    for file in files:
        yield from _iter_file(file)


def _iter_file(path: Path) -> Iterator[tuple[str, RawRow]]:
    suffix = _data_suffix(path)
    if not suffix:
        expected = ", ".join(SUPPORTED_SUFFIXES)
        raise DataError(f"{path}: unsupported file type, expected one of {expected} (optionally .gz)")
    try:
        stream = _open_text(path)
    except OSError as err:
        raise DataError(f"{path}: cannot read the file: {err}") from err
    with stream:
        lines = _CountedLines(stream)
        try:
            if suffix == ".csv":
                yield from _iter_csv(lines, path)
            elif suffix == ".json" and _first_char(stream) == "[":
                yield from _iter_json_list(stream, path)
            else:  # .jsonl, or a .json file that holds one JSON value per line
                yield from _iter_json_lines(lines, path)
        except _READ_ERRORS as err:
            if lines.count == 0:
                raise DataError(f"{path}: cannot read the file: {err}") from err
            yield f"{path}:{lines.count + 1}", ValueError(
                f"the file ends early or is corrupt after line {lines.count} ({err}); the rows from here on are "
                "lost, re-download or re-create the file to read them"
            )
        except csv.Error as err:
            raise DataError(f"{path}:{lines.count}: cannot parse the CSV: {err}") from err


class _CountedLines:
    """The lines of a text stream, counted so that a read error can say after which line it struck."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream, self.count = stream, 0

    def __iter__(self) -> _CountedLines:
        return self

    def __next__(self) -> str:
        line = next(self.stream)
        self.count += 1
        return line


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig drops a byte-order mark (common in CSV exports); newline="" is what csv expects.
    # surrogateescape keeps an undecodable byte as a lone surrogate, so only its own line is rejected.
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")


def _first_char(stream: IO[str]) -> str:
    """The first non-blank character, leaving the stream at its start."""
    head = stream.read(4096).lstrip()
    stream.seek(0)
    return head[:1]


def _iter_json_lines(lines: Iterator[str], path: Path) -> Iterator[tuple[str, RawRow]]:
    for line_number, line in enumerate(lines, start=1):
        if line.strip():  # blank lines are not rows
            yield f"{path}:{line_number}", _parse_json_line(line)


def _parse_json_line(line: str) -> RawRow:
    """The JSON value on ``line``, or (returned, not raised) a ValueError saying why there is none."""
    if found := _SURROGATE.search(line):
        return ValueError(f"{_surrogate_reason(found.group())} at column {found.start() + 1}")
    try:
        return _valid_text(json.loads(line))
    except json.JSONDecodeError as err:
        return ValueError(f"invalid JSON: {err.msg} (column {err.colno})")
    except (ValueError, RecursionError) as err:  # an integer of over 4300 digits, or nesting too deep
        return ValueError(f"invalid JSON: {_refusal(err)}")


def _iter_json_list(stream: IO[str], path: Path) -> Iterator[tuple[str, RawRow]]:
    try:
        rows = json.load(stream)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from err
    except (ValueError, RecursionError) as err:
        raise DataError(f"{path}: invalid JSON: {_refusal(err)}") from err
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of rows, got a JSON {type(rows).__name__}")
    for index, row in enumerate(rows, start=1):
        yield f"{path}:#{index}", _valid_text(row)


def _refusal(err: ValueError | RecursionError) -> str:
    """Why the JSON parser refused text it could scan (it raises these rather than JSONDecodeError)."""
    return "nested too deeply" if isinstance(err, RecursionError) else str(err)


def _iter_csv(lines: Iterator[str], path: Path) -> Iterator[tuple[str, RawRow]]:
    records = _csv_records(lines)
    header_line, header = next(records, (1, []))
    if found := _SURROGATE.search("".join(header)):
        reason = _surrogate_reason(found.group())
        raise DataError(f"{path}:{header_line}: the CSV header is {reason}; re-save the file as UTF-8")
    for line_number, fields in records:
        yield f"{path}:{line_number}", _csv_row(header, fields)


def _csv_records(lines: Iterator[str]) -> Iterator[tuple[int, list[str]]]:
    """``(line where it starts, fields)`` of every CSV record that is not a blank line."""
    reader = csv.reader(lines)
    start = 1
    for fields in reader:
        if len(fields) > 1 or "".join(fields).strip():
            yield start, fields
        start = reader.line_num + 1


def _csv_row(header: list[str], fields: list[str]) -> RawRow:
    """The record as ``{column: value}`` (None for missing trailing values), or why it is not a row."""
    if len(fields) > len(header):
        return ValueError(f"row has {len(fields)} fields, the header has {len(header)}")
    row = {name: fields[index] if index < len(fields) else None for index, name in enumerate(header)}
    for name, value in row.items():
        if value is not None and (found := _SURROGATE.search(value)):
            return ValueError(f"{_surrogate_reason(found.group())} in field '{name}'")
    return row


def _valid_text(row: RawRow) -> RawRow:
    """``row``, or a ValueError when a string in it (key or value, at any depth) is not valid Unicode."""
    pending: list[Any] = [row]
    while pending:  # a loop, not recursion: JSON may nest about as deep as Python's recursion limit
        value = pending.pop()
        if isinstance(value, str) and (found := _SURROGATE.search(value)):
            return ValueError(_surrogate_reason(found.group()))
        if isinstance(value, dict):
            pending += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            pending += value
    return row


def _surrogate_reason(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # how surrogateescape stands in for the byte code - 0xDC00
        return f"not valid UTF-8: byte 0x{code - 0xDC00:02x}"
    return f"holds a lone surrogate \\u{code:04x}, which is not valid Unicode"


def _require_datasets(what: str) -> Any:
    """The optional ``datasets`` module, imported only for the sources that need it."""
    try:
        import datasets
    except ImportError as err:
        raise DataError(
            f"{what} needs the Hugging Face `datasets` package: pip install 'alignflow[hub]', "
            "or pass a local .jsonl/.json/.csv file or folder instead"
        ) from err
    return datasets


def _iter_saved_dataset(folder: Path) -> Iterator[tuple[str, RawRow]]:
    datasets = _require_datasets(f"{folder} (a Hugging Face save_to_disk folder)")
    dataset = datasets.load_from_disk(str(folder))
    if isinstance(dataset, datasets.DatasetDict):
        splits = sorted(dataset)
        raise DataError(
            f"{folder}: holds the splits {', '.join(splits)}; pass one split's folder, e.g. {folder / splits[0]}"
        )
    for index, row in enumerate(dataset, start=1):
        yield f"{folder}:#{index}", row


def _iter_hub(name: str) -> Iterator[tuple[str, RawRow]]:
    dataset_name, _, split = name.partition(":")
    split = split or "train"
    datasets = _require_datasets(f"{name!r} (a hub dataset name; no local file has that name)")
    try:
        dataset = datasets.load_dataset(dataset_name, split=split)
    except Exception as err:  # the hub raises many types (network, missing split, auth)
        raise DataError(f"{name}: cannot load hub dataset {dataset_name!r} split {split!r}: {err}") from err
    for index, row in enumerate(dataset, start=1):
        yield f"{dataset_name}[{split}]:#{index}", row

"""Raw rows from a data source, each with the location that error messages will name.

A source is a ``.jsonl`` / ``.json`` / ``.csv`` file (optionally ``.gz``), a folder of such files
(not recursive, sorted by name), a Hugging Face ``save_to_disk`` folder, or a hub dataset name
(``Anthropic/hh-rlhf[:split]``, split ``train`` by default). The last two need ``datasets``.
Rows are yielded as ``("path:line", row)``; JSON-list items as ``"path:#index"`` (1-based). A
line that cannot be parsed is yielded as an exception so the reader can report it and go on.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

RawRow = dict[str, Any] | list[Any] | str | int | float | bool | None | Exception

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")


class DataError(ValueError):
    """A source that cannot be read, or (in strict mode) a malformed row."""


def iter_rows(source: str | Path) -> Iterator[tuple[str, RawRow]]:
    """Every raw row of ``source`` with its location, in file order."""
    path = Path(source)
    if path.is_dir():
        yield from _iter_folder(path)
    elif path.is_file():
        yield from _iter_file(path)
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
        with _open_text(path) as stream:
            if suffix == ".csv":
                yield from _iter_csv(stream, path)
            elif suffix == ".json" and _first_char(stream) == "[":
                yield from _iter_json_list(stream, path)
            else:  # .jsonl, or a .json file that holds one JSON value per line
                yield from _iter_json_lines(stream, path)
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as err:
        raise DataError(f"{path}: cannot read the file: {err}") from err


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig drops a byte-order mark (common in CSV exports); newline="" is what csv expects.
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _first_char(stream: IO[str]) -> str:
    """The first non-blank character, leaving the stream at its start."""
    head = stream.read(4096).lstrip()
    stream.seek(0)
    return head[:1]


def _iter_json_lines(stream: IO[str], path: Path) -> Iterator[tuple[str, RawRow]]:
    for line_number, line in enumerate(stream, start=1):
        if not line.strip():
            continue  # blank lines are not rows
        try:
            row: RawRow = json.loads(line)
        except json.JSONDecodeError as err:
            row = ValueError(f"invalid JSON: {err.msg} (column {err.colno})")
        yield f"{path}:{line_number}", row


def _iter_json_list(stream: IO[str], path: Path) -> Iterator[tuple[str, RawRow]]:
    try:
        rows = json.load(stream)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from err
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of rows, got a JSON {type(rows).__name__}")
    for index, row in enumerate(rows, start=1):
        yield f"{path}:#{index}", row


def _iter_csv(stream: IO[str], path: Path) -> Iterator[tuple[str, RawRow]]:
    reader = csv.DictReader(stream)
    header_size = len(reader.fieldnames or [])
    first_line = reader.line_num + 1
    for row in reader:
        location = f"{path}:{first_line}"  # where the record starts (quoted fields may span lines)
        first_line = reader.line_num + 1
        if None in row:
            yield location, ValueError(f"row has {header_size + len(row[None])} fields, the header has {header_size}")
        else:
            yield location, row


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

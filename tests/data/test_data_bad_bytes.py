"""Bad bytes, empty files and truncated archives cost only what they break, and say where."""

import gzip
import json
import random

import pytest

from alignflow.data import DataError, detect_kind, read_prompts
from alignflow.data.sources import iter_rows

LINES, BAD_LINE = 10_001, 5_001


def prompt_lines(count, bad_line=None):
    """``count`` JSONL prompt rows as bytes; ``bad_line`` (1-based) carries a byte that is not UTF-8."""
    lines = [json.dumps({"prompt": f"question {number} é"}).encode() for number in range(1, count + 1)]
    if bad_line is not None:
        lines[bad_line - 1] = b'{"prompt": "caf\xe9 latin-1"}'
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("name, pack", [("rows.jsonl", bytes), ("rows.jsonl.gz", gzip.compress)])
def test_a_bad_byte_on_a_middle_line_skips_only_that_line(tmp_path, name, pack):
    path = tmp_path / name
    path.write_bytes(pack(prompt_lines(LINES, BAD_LINE)))
    result = read_prompts(path)
    assert (result.rows_read, len(result.examples)) == (LINES, LINES - 1)
    assert [str(issue) for issue in result.issues] == [f"{path}:{BAD_LINE}: not valid UTF-8: byte 0xe9 at column 16"]
    assert detect_kind(path) == "prompt"


def test_a_bad_byte_in_a_csv_record_skips_only_that_record(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_bytes(b'id,prompt\n1,first\n2,"two\nlines \xff"\n3,third\n')
    result = read_prompts(path)
    assert [example.prompt[0]["content"] for example in result.examples] == ["first", "third"]
    assert [str(issue) for issue in result.issues] == [f"{path}:3: not valid UTF-8: byte 0xff in field 'prompt'"]


def test_a_csv_header_that_is_not_utf8_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_bytes(b"id,pr\xf6mpt\n1,first\n")
    message = rf"^{path}:1: the CSV header is not valid UTF-8: byte 0xf6; re-save the file as UTF-8$"
    with pytest.raises(DataError, match=message):
        read_prompts(path)


def test_a_bad_byte_in_a_json_list_item_skips_only_that_item(tmp_path):
    path = tmp_path / "rows.json"
    path.write_bytes(b'[{"prompt": "fine"}, {"prompt": "caf\xe9"}]')
    result = read_prompts(path)
    assert [example.source for example in result.examples] == [f"{path}:#1"]
    assert [str(issue) for issue in result.issues] == [f"{path}:#2: not valid UTF-8: byte 0xe9"]


def test_a_folder_keeps_the_good_rows_of_a_file_with_a_bad_byte(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(prompt_lines(3, bad_line=2))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(prompt_lines(2)))
    result = read_prompts(tmp_path)
    assert len(result.examples) == 4
    assert [issue.source for issue in result.issues] == [f"{tmp_path / 'a.jsonl'}:2"]


def test_an_escaped_lone_surrogate_is_a_skipped_row_not_a_crash_later(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": "half a pair \\ud83d"}\n')
    result = read_prompts(path)
    assert len(result.examples) == 1
    assert [str(issue) for issue in result.issues] == [
        f"{path}:2: holds a lone surrogate \\ud83d, which is not valid Unicode"
    ]


@pytest.mark.parametrize("line, reason", [
    ("1" * 5000, "invalid JSON: Exceeds the limit (4300 digits) for integer string conversion"),
    ("[" * 100_000, "invalid JSON: nested too deeply"),
])
def test_json_the_parser_refuses_is_a_skipped_row(tmp_path, line, reason):
    path = tmp_path / "rows.jsonl"
    path.write_text(f'"first"\n{line}\n"third"\n')
    result = read_prompts(path)
    assert len(result.examples) == 2
    assert [issue.source for issue in result.issues] == [f"{path}:2"]
    assert result.issues[0].reason.startswith(reason)


@pytest.mark.parametrize("content", [b"", b"\n  \n\t\r\n"])
@pytest.mark.parametrize("name, pack", [("rows.jsonl", bytes), ("rows.jsonl.gz", gzip.compress), ("rows.csv", bytes)])
def test_an_empty_or_blank_file_says_it_has_no_rows(tmp_path, content, name, pack):
    path = tmp_path / name
    path.write_bytes(pack(content))
    assert read_prompts(path).rows_read == 0
    with pytest.raises(DataError, match=rf"^{path}: no rows"):
        detect_kind(path)


def test_a_csv_with_only_a_header_says_it_has_no_rows(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("id,prompt\n")
    with pytest.raises(DataError, match=rf"^{path}: no rows"):
        detect_kind(path)


def incompressible_rows(count):
    """Rows gzip cannot shrink much, so a cut through the archive falls after many of them."""
    rng = random.Random(0)
    return b"".join(json.dumps({"prompt": rng.randbytes(48).hex()}).encode() + b"\n" for _ in range(count))


def test_a_truncated_gzip_keeps_the_rows_before_the_cut_and_reports_it(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    packed = gzip.compress(incompressible_rows(2000))
    path.write_bytes(packed[: len(packed) // 2])
    result = read_prompts(path)
    assert 0 < len(result.examples) < 2000
    assert result.rows_read == len(result.examples) + 1
    [issue] = result.issues
    assert issue.source == f"{path}:{len(result.examples) + 1}"
    assert issue.reason.startswith(f"the file ends early or is corrupt after line {len(result.examples)}")
    assert "Compressed file ended" in issue.reason and "\n" not in issue.reason
    with pytest.raises(DataError, match=rf"^{path}:{len(result.examples) + 1}: the file ends early"):
        read_prompts(path, strict=True)


def test_a_gzip_cut_before_its_first_line_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(gzip.compress(prompt_lines(50))[:20])
    with pytest.raises(DataError, match=rf"^{path}: cannot read the file: Compressed file ended"):
        read_prompts(path)


def test_corrupt_gzip_data_is_reported_not_raised_as_a_zlib_error(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    packed = bytearray(gzip.compress(incompressible_rows(2000)))
    packed[len(packed) // 2] ^= 0xFF
    path.write_bytes(bytes(packed))
    result = read_prompts(path)
    assert result.examples
    assert result.issues[-1].reason.startswith("the file ends early or is corrupt after line")


def test_a_file_that_is_not_gzip_at_all_is_one_error(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(b'{"prompt": "plain text"}\n')
    with pytest.raises(DataError, match=rf"^{path}: cannot read the file: Not a gzipped file"):
        list(iter_rows(path))

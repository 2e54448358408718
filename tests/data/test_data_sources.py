"""Raw rows and their locations from every supported kind of source."""

import gzip
import json
import sys
import types

import pytest

from alignflow.data.sources import DataError, iter_rows


def test_jsonl_rows_carry_path_and_line_and_bad_json_is_yielded_not_raised(fixtures):
    rows = list(iter_rows(fixtures / "prompts.jsonl"))
    locations = [location for location, _ in rows]
    assert locations[:4] == [f"{fixtures / 'prompts.jsonl'}:{line}" for line in (1, 2, 3, 4)]
    assert f"{fixtures / 'prompts.jsonl'}:5" not in locations  # a blank line is not a row
    bad = dict(rows)[f"{fixtures / 'prompts.jsonl'}:6"]
    assert isinstance(bad, ValueError) and "invalid JSON" in str(bad)


def test_gzip_is_read_transparently(fixtures, tmp_path):
    plain = tmp_path / "rows.jsonl"
    plain.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    packed = tmp_path / "rows.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert [row for _, row in iter_rows(packed)] == [row for _, row in iter_rows(plain)]
    assert next(iter_rows(packed))[0] == f"{packed}:1"


def test_json_list_items_are_numbered_with_a_hash(fixtures):
    location, row = next(iter_rows(fixtures / "alpaca.json"))
    assert location == f"{fixtures / 'alpaca.json'}:#1"
    assert row["instruction"] == "Give a synonym."


def test_a_json_file_with_one_value_per_line_is_read_as_lines(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    assert [location for location, _ in iter_rows(path)] == [f"{path}:1", f"{path}:2"]


def test_invalid_json_list_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n{"a": 1},\n{"a": }\n]')
    with pytest.raises(DataError, match=rf"{path}:3: invalid JSON"):
        list(iter_rows(path))


def test_csv_rows_are_dicts_located_at_the_line_where_the_record_starts(fixtures):
    rows = list(iter_rows(fixtures / "prompts.csv"))
    assert [location.rsplit(":", 1)[1] for location, _ in rows] == ["2", "3", "5", "6"]
    assert rows[1][1]["Prompt"] == "A prompt\nthat spans two lines"
    assert isinstance(rows[2][1], ValueError) and "4 fields, the header has 3" in str(rows[2][1])


def test_folder_reads_every_supported_file_in_sorted_order(tmp_path):
    (tmp_path / "b.jsonl").write_text('"second"\n')
    (tmp_path / "a.json").write_text('["first"]')
    (tmp_path / "notes.txt").write_text("ignored")
    assert [row for _, row in iter_rows(tmp_path)] == ["first", "second"]


def test_missing_path_and_unsupported_file_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        list(iter_rows(tmp_path / "nope.jsonl"))
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="unsupported file type"):
        list(iter_rows(tmp_path / "data.parquet"))
    with pytest.raises(DataError, match="no .jsonl/.json/.csv files"):
        list(iter_rows(tmp_path))


def test_hub_name_without_datasets_asks_to_install_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail even where installed
    with pytest.raises(DataError, match=r"alignflow\[hub\].*or pass a local"):
        list(iter_rows("Anthropic/hh-rlhf:test"))


def test_save_to_disk_folder_without_datasets_asks_to_install_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    (tmp_path / "state.json").write_text(json.dumps({"_data_files": []}))
    with pytest.raises(DataError, match="save_to_disk"):
        list(iter_rows(tmp_path))


@pytest.fixture
def fake_datasets(monkeypatch):
    """A stand-in for the optional `datasets` package (never downloads anything)."""
    module = types.ModuleType("datasets")
    module.DatasetDict = type("DatasetDict", (dict,), {})
    monkeypatch.setitem(sys.modules, "datasets", module)
    return module


def test_hub_rows_are_numbered_within_their_split(fake_datasets):
    fake_datasets.load_dataset = lambda name, split: [{"name": name, "split": split}]
    assert list(iter_rows("Anthropic/hh-rlhf:test")) == [
        ("Anthropic/hh-rlhf[test]:#1", {"name": "Anthropic/hh-rlhf", "split": "test"})
    ]
    assert next(iter_rows("Anthropic/hh-rlhf"))[0] == "Anthropic/hh-rlhf[train]:#1"


def test_save_to_disk_folders(fake_datasets, tmp_path):
    (tmp_path / "state.json").write_text("{}")
    fake_datasets.load_from_disk = lambda path: [{"prompt": "a"}]
    assert list(iter_rows(tmp_path)) == [(f"{tmp_path}:#1", {"prompt": "a"})]
    fake_datasets.load_from_disk = lambda path: fake_datasets.DatasetDict(train=[], test=[])
    with pytest.raises(DataError, match="holds the splits test, train; pass one split's folder"):
        list(iter_rows(tmp_path))


def test_csv_blank_lines_are_not_rows_and_do_not_shift_locations(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("\n id,prompt\n1,a\n\n   \n2,b\n")
    rows = list(iter_rows(path))
    assert [location.rsplit(":", 1)[1] for location, _ in rows] == ["3", "6"]
    assert rows[1][1] == {" id": "2", "prompt": "b"}

from pathlib import Path

from rich.console import Console

from alignflow.config.schema import DataConfig
from alignflow.data.readers import read_preferences, read_prompts
from alignflow.trainers.data_setup import load_train_val

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def test_held_out_rows_are_written_beside_the_run_and_read_back_as_prompts(tmp_path):
    data = DataConfig(train=str(FIXTURES / "hh_small.jsonl.gz"), val_fraction=0.3, split_seed=3)
    train, val = load_train_val(data, read_preferences, output_dir=tmp_path, console=Console(quiet=True))
    written = tmp_path / "validation.jsonl"
    pairs = read_preferences(str(written), strict=True).examples
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [(v.prompt, v.chosen, v.rejected) for v in val]
    # What `alignflow eval` reads with prompts.source=<run>/validation.jsonl: none of them was trained on.
    prompts = read_prompts(str(written), strict=True).examples
    assert [p.prompt for p in prompts] == [v.prompt for v in val]
    assert not {str(v.prompt) for v in val} & {str(t.prompt) for t in train}


def test_an_explicit_validation_file_is_not_copied(tmp_path):
    data = DataConfig(train=str(FIXTURES / "preference.jsonl"), validation=str(FIXTURES / "hh_small.jsonl.gz"))
    load_train_val(data, read_preferences, output_dir=tmp_path, console=Console(quiet=True))
    assert not (tmp_path / "validation.jsonl").exists()

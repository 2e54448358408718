"""explore counts rows, fields, turns, malformed rows and lengths; render_explore draws them."""

from rich.console import Console

from alignflow.data import explore, render_explore


def test_explore_hh_counts(fixtures):
    report = explore(fixtures / "hh_small.jsonl.gz", samples=2)
    assert (report.kind, report.rows_read, report.good_rows, report.malformed_rows) == ("preference", 10, 4, 6)
    assert report.identical_pairs == 1
    assert report.fields == {"chosen": 9, "rejected": 9}  # the bad-JSON line has no fields
    assert (report.turns.min, report.turns.median, report.turns.max) == (1, 2.0, 3)
    assert {group.reason: group.count for group in report.malformed}["chosen is identical to rejected"] == 1
    assert [example.source.rsplit(":", 1)[1] for example in report.samples] == ["1", "2"]
    assert report.length_unit == "characters"
    prompt = report.lengths["prompt"]
    assert prompt.max == len("\n\nHuman: Write a dialogue line.\n\nAssistant: Sure: Human: hello there. Assistant: hi!"
                             "\n\nHuman: Shorter please.\n\nAssistant:")
    assert prompt.p50 <= prompt.p90 <= prompt.p99 <= prompt.max
    assert report.lengths["chosen"].max == len(" Here it is:\n\nABC-123.")  # the merged response
    assert set(report.lengths) == {"prompt", "chosen", "rejected"}


def test_explore_measures_tokens_with_a_tokenizer(fixtures, plain_tokenizer):
    report = explore(fixtures / "prompts.jsonl", plain_tokenizer, samples=0)
    assert report.length_unit == "tokens"
    assert report.fields["<string>"] == 1
    # "\n\nHuman: What is the tallest mountain?\n\nAssistant:" is 10 words and marks; the GSM8K-like one is 17
    assert (report.lengths["prompt"].p50, report.lengths["prompt"].max) == (10, 17)
    assert set(report.lengths) == {"prompt", "reference"}
    assert report.samples == []


def test_explore_groups_malformed_rows_with_first_locations(fixtures):
    report = explore(fixtures / "sft.jsonl", kind="sft")
    groups = {group.reason: group.first_locations for group in report.malformed}
    assert groups["field 'response' is empty"] == [f"{fixtures / 'sft.jsonl'}:5"]


def test_render_explore_draws_the_tables(fixtures):
    console = Console(record=True, width=200)
    render_explore(explore(fixtures / "hh_small.jsonl.gz"), console)
    text = console.export_text()
    for expected in ("rows read", "identical pairs", "p90", "malformed rows", "chosen is identical to rejected",
                     "hh_small.jsonl.gz:4", "Paris."):
        assert expected in text


def test_explore_a_source_with_no_good_rows(fixtures):
    report = explore(fixtures / "prompts.csv", kind="preference")
    assert (report.rows_read, report.good_rows, report.turns, report.lengths) == (4, 0, None, {})
    assert report.fields == {"id": 3, "Prompt": 3, "type": 3}  # the over-long row is an issue, not fields
    render_explore(report, Console(record=True, width=200))

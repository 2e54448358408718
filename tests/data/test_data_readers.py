"""Each reader on each supported layout, with malformed rows reported by location and reason."""

import json

import pytest

from alignflow.data import DataError, detect_kind, read_preferences, read_prompts, read_sft
from alignflow.data.types import PreferenceExample, PromptExample, SFTExample


def user(text):
    return {"role": "user", "content": text}


def issues_by_line(result):
    return {issue.source.rsplit(":", 1)[1]: issue.reason for issue in result.issues}


def test_hh_preferences_from_gzip(fixtures):
    result = read_preferences(fixtures / "hh_small.jsonl.gz")
    assert result.rows_read == 10
    assert [example.source.rsplit(":", 1)[1] for example in result.examples] == ["1", "2", "6", "10"]
    assert result.examples[0] == PreferenceExample(
        [user("What is the capital of France?")], "Paris.", "Lyon, I think.", f"{fixtures / 'hh_small.jsonl.gz'}:1"
    )
    assert result.examples[1].chosen == "Human: hi."  # text, not a turn: no blank line before it
    assert issues_by_line(result) == {
        "3": "chosen response (the final Assistant turn) is empty",
        "4": "chosen is identical to rejected",
        "5": "chosen and rejected dialogues differ before the final Assistant turn",
        "7": "invalid JSON: Expecting value (column 1)",
        "8": "chosen: dialogue starts with an Assistant turn, expected a Human turn first",
        "9": "chosen dialogue ends with a Human turn, expected a final Assistant turn",
    }


def test_preferences_with_string_message_and_conversation_prompts(fixtures):
    result = read_preferences(fixtures / "preference.jsonl")
    prompts = [example.prompt for example in result.examples]
    assert prompts == [
        [user("Name a primary colour.")],
        [{"role": "system", "content": "Be brief."}, user("2+2?")],
        [user("Translate 'chat' to English.")],  # chosen/rejected given as conversations
        [user("Hi there")],  # an HH-style prompt string
        [user("Pick a number.")],  # no prompt field: the shared messages of two conversations
    ]
    assert [(example.chosen, example.rejected) for example in result.examples][2:] == [
        ("Cat.", "Chat."), (" Hello! How can I help?", " What."), ("7", "banana"),
    ]
    assert issues_by_line(result) == {
        "6": "missing field 'rejected' (fields: prompt, chosen)",
        "7": "field 'chosen' must be a string, got a number",
        "8": "row is a JSON list, expected an object with chosen, rejected",
        "9": "field 'chosen' is empty",
    }


def test_sft_from_prompt_response_completion_and_question_answer(fixtures):
    result = read_sft(fixtures / "sft.jsonl")
    assert [(example.prompt, example.response) for example in result.examples] == [
        ([user("Say hi.")], "Hi!"),
        ([user("Complete: 1, 2,")], " 3"),
        ([user("What is 3*3?")], "9"),
        ([user("Capital of Italy?")], "Rome."),
    ]
    assert issues_by_line(result)["5"] == "field 'response' is empty"
    assert issues_by_line(result)["6"].startswith("no response field")


def test_sft_from_chat_messages(fixtures):
    result = read_sft(fixtures / "chat.jsonl")
    first = result.examples[0]
    assert [m["role"] for m in first.prompt] == ["system", "user", "assistant", "user"]
    assert first.response == "Sunny."
    assert result.examples[1].prompt == [user("Ping")]  # extra message keys are dropped
    assert issues_by_line(result) == {
        "3": "field 'messages' does not end with an assistant message",
        "4": "field 'messages' message 1 has role 'robot', expected one of system, user, assistant",
    }


def test_sft_from_alpaca_json_with_input_and_history(fixtures):
    result = read_sft(fixtures / "alpaca.json")
    first = SFTExample([user("Give a synonym.\n\nhappy")], "Joyful.", f"{fixtures / 'alpaca.json'}:#1")
    assert result.examples[0] == first
    assert result.examples[2].prompt == [
        user("Name a fruit."), {"role": "assistant", "content": "Apple."},
        user("Another one."), {"role": "assistant", "content": "Pear."}, user("And a vegetable?"),
    ]
    assert [str(issue) for issue in result.issues] == [f"{fixtures / 'alpaca.json'}:#4: field 'output' is empty"]


def test_sft_from_hh_pairs_trains_on_the_chosen_response(fixtures):
    result = read_sft(fixtures / "hh_small.jsonl.gz")
    assert result.examples[0].response == "Paris."
    assert "4" not in issues_by_line(result)  # an identical pair is still a fine SFT example


def test_prompts_from_strings_objects_and_references(fixtures):
    result = read_prompts(fixtures / "prompts.jsonl")
    assert [(example.prompt[0]["content"], example.reference) for example in result.examples] == [
        ("What is the tallest mountain?", None),
        ("Write a haiku about rain.", None),
        ("Tom has 3 apples and eats one. How many are left?", "He has 3 - 1 = 2.\n#### 2"),
        ("Summarise: the cat sat.", "A cat sat."),
    ]
    assert issues_by_line(result) == {
        "6": "invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        "7": "row is a JSON number, expected an object with a prompt field, or a JSON string",
        "8": "field 'prompt' is empty",
    }


def test_prompts_from_csv_with_case_insensitive_headers(fixtures):
    result = read_prompts(fixtures / "prompts.csv")
    assert [example.prompt[0]["content"] for example in result.examples] == [
        "How do I kill a Python process?", "A prompt\nthat spans two lines",
    ]
    assert issues_by_line(result) == {"5": "row has 4 fields, the header has 3", "6": "field 'prompt' is empty"}


def test_prompts_from_hh_sft_and_chat_rows(fixtures):
    hh = read_prompts(fixtures / "hh_small.jsonl.gz")
    assert hh.examples[1].prompt[-1] == user("Shorter please.")  # up to the final Assistant turn
    assert all(example.reference is None for example in hh.examples)
    assert issues_by_line(hh) == {
        "7": "invalid JSON: Expecting value (column 1)",
        "8": "chosen: dialogue starts with an Assistant turn, expected a Human turn first",
    }
    sft = read_prompts(fixtures / "sft.jsonl")
    assert sft.examples[0] == PromptExample([user("Say hi.")], "Hi!", f"{fixtures / 'sft.jsonl'}:1")
    chat = read_prompts(fixtures / "chat.jsonl")
    assert chat.examples[0].reference == "Sunny."
    assert chat.examples[2].prompt == [user("Ends with the user")] and chat.examples[2].reference is None


def test_strict_mode_raises_at_the_first_malformed_row(fixtures):
    reason = r"chosen response \(the final Assistant turn\) is empty"
    with pytest.raises(DataError, match=rf"hh_small\.jsonl\.gz:3: {reason}"):
        read_preferences(fixtures / "hh_small.jsonl.gz", strict=True)


def test_max_samples_counts_good_examples_only(fixtures):
    result = read_preferences(fixtures / "hh_small.jsonl.gz", max_samples=3)
    assert len(result.examples) == 3
    assert result.rows_read == 6  # rows 3, 4 and 5 were read and reported too
    assert len(result.issues) == 3


def test_every_row_is_either_an_example_or_an_issue(fixtures):
    for name in ("hh_small.jsonl.gz", "preference.jsonl", "sft.jsonl", "alpaca.json", "chat.jsonl", "prompts.jsonl"):
        for read in (read_preferences, read_sft, read_prompts):
            result = read(fixtures / name)
            assert len(result.examples) + len(result.issues) == result.rows_read, (name, read.__name__)


def test_detect_kind(fixtures, tmp_path):
    assert detect_kind(fixtures / "hh_small.jsonl.gz") == "preference"
    assert detect_kind(fixtures / "preference.jsonl") == "preference"
    assert detect_kind(fixtures / "sft.jsonl") == "sft"
    assert detect_kind(fixtures / "chat.jsonl") == "sft"
    assert detect_kind(fixtures / "alpaca.json") == "sft"
    assert detect_kind(fixtures / "prompts.jsonl") == "prompt"
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"text": "hello"}) + "\n")
    with pytest.raises(DataError, match="pass the kind explicitly"):
        detect_kind(unknown)

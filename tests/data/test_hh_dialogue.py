"""The HH-RLHF dialogue parser on the quirks found in the real files."""

import pytest

from alignflow.data.hh import hh_pair_to_preference, parse_hh_dialogue

H, A = "\n\nHuman: ", "\n\nAssistant: "


def test_multi_turn_dialogue_maps_roles_and_strips_whitespace():
    text = H + "Hi  " + A + " Hello!\n" + H + "How are you?" + A + "Fine."
    assert parse_hh_dialogue(text) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "Fine."},
    ]


def test_marker_without_blank_line_stays_in_the_turn():
    text = H + "Play a role." + A + "Sure.  Human: then I say hi. Assistant: ok\nHuman: next"
    assert parse_hh_dialogue(text)[1]["content"] == "Sure.  Human: then I say hi. Assistant: ok\nHuman: next"


def test_leading_blank_line_is_optional():
    assert parse_hh_dialogue("Human: hi\n\nAssistant: yo") == parse_hh_dialogue(H + "hi" + A + "yo")


def test_empty_intermediate_turn_is_kept_and_empty_final_turn_is_parsed():
    messages = parse_hh_dialogue(H + "Hi" + A + H + "Still there?" + A)
    assert [m["content"] for m in messages] == ["Hi", "", "Still there?", ""]


def test_consecutive_turns_of_one_role_are_merged():
    messages = parse_hh_dialogue(H + "Give me a key." + A + "Here it is:" + A + "ABC-123.")
    assert messages == [{"role": "user", "content": "Give me a key."},
                        {"role": "assistant", "content": "Here it is:\n\nABC-123."}]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no 'Human:' or 'Assistant:' turns"),
        ("just text", "no 'Human:' or 'Assistant:' turns"),
        ("preamble" + H + "hi" + A + "yo", "text before the first turn marker"),
        ("Assistant: hi" + H + "yo", "starts with an Assistant turn"),
    ],
)
def test_malformed_dialogues_raise_a_precise_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_hh_dialogue(text)


def test_pair_shares_the_prompt_and_keeps_both_final_turns():
    example = hh_pair_to_preference(H + "Q?" + A + "A1" + H + "More?" + A + "Yes.",
                                    H + "Q?" + A + "A1" + H + "More?" + A + "No.", "f.jsonl:3")
    assert example.prompt == [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A1"},
                              {"role": "user", "content": "More?"}]
    assert (example.chosen, example.rejected, example.source) == ("Yes.", "No.", "f.jsonl:3")


def test_a_response_containing_an_assistant_marker_does_not_break_the_pair():
    example = hh_pair_to_preference(H + "Key?" + A + "Here:" + A + "ABC", H + "Key?" + A + "No.", "f:1")
    assert example.prompt == [{"role": "user", "content": "Key?"}]
    assert example.chosen == "Here:\n\nABC"


@pytest.mark.parametrize(
    ("chosen", "rejected", "reason"),
    [
        (H + "Q1" + A + "A", H + "Q2" + A + "B", "chosen and rejected dialogues differ before the final Assistant"),
        (H + "Q" + A + "Same", H + "Q" + A + "Same ", "chosen is identical to rejected"),
        (H + "Q" + A, H + "Q" + A + "B", "chosen response \\(the final Assistant turn\\) is empty"),
        (H + "Q" + A + "A", H + "Q" + A + "A" + H + "Bye", "rejected dialogue ends with a Human turn"),
        ("no markers", H + "Q" + A + "B", "chosen: no 'Human:' or 'Assistant:' turns"),
    ],
)
def test_invalid_pairs_raise_a_precise_reason(chosen, rejected, reason):
    with pytest.raises(ValueError, match=reason):
        hh_pair_to_preference(chosen, rejected, "f:1")

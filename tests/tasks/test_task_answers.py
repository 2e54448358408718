"""Final-answer extraction on free-form responses, and the exact-match reward."""

import pytest

from alignflow.tasks.answers import exact_match, extract_answer, is_correct, parse_number, reference_answer


@pytest.mark.parametrize(("response", "answer"), [
    ("42", "42"),
    ("23 + 58 = 81", "81"),
    ("First 3 + 4 = 7, then we add 5 to get 12", "12"),  # the last number, not the last "="
    ("The answer is 81.", "81"),
    ("Answer: 42", "42"),
    ("answer = -7", "-7"),
    ("**Answer:** $1,234.", "1,234"),
    ("The final answer is \\(15\\)", "15"),
    ("The answer is 23 + 58 = 81.", "81"),  # a sum after the marker: its result
    ("The answer is 12 (because 3 * 4 = 12), not 13", "12"),  # the marker beats a later number
    ("The answer is 7. I hope this answers your 2 questions.", "7"),
    ("so the result is \\boxed{1,000} and not 999", "1,000"),
    ("\\boxed{\\text{x} = {-3}}", "-3"),  # nested braces
    ("Natalia sold 48/2 = 24 clips.\n#### 72\nThen 5 more", "72"),
    ("x = -42", "-42"),
    ("The temperature is (-5) degrees", "-5"),
    ("5-3", "3"),  # a minus after a digit is subtraction, not a sign
    ("It costs $18.50 in total", "18.50"),
    ("1,2345 items", "2345"),  # not a thousands group
    ("I answered 3 of them; total 9", "9"),  # "answered" is not an answer marker
    ("I don't know", None),
    ("", None),
])
def test_extract_answer(response, answer):
    assert extract_answer(response) == answer


@pytest.mark.parametrize(("text", "value"), [("1,200", "1200"), ("$18.50", "18.5"), ("-3", "-3"), ("81.0", "81"),
                                             ("7.", "7"), ("abc", None), (None, None)])
def test_parse_number(text, value):
    parsed = parse_number(text)
    assert (parsed is None and value is None) or parsed == parse_number(value)


def test_reference_answer_takes_the_gsm8k_final_line():
    assert reference_answer("She has 3 + 4 = <<3+4=7>>7.\n#### 7") == "7"
    assert reference_answer(" 1,200 ") == "1,200"
    assert is_correct("The answer is 1200.", "Steps...\n#### 1,200")
    assert is_correct("so 81.0", "81") and not is_correct("80", "81")
    with pytest.raises(ValueError, match="reference 'many' has no numeric answer"):
        is_correct("5", "many")


def test_exact_match_scores_against_the_reference_metadata():
    responses = ["2 + 3 = 5", "The answer is 6", "", "\\boxed{-4}"]
    metadata = {"reference": ["5", "5", "5", "-4"], "source": ["t:1", "t:2", "t:3", "t:4"]}
    assert exact_match([[]] * 4, responses, metadata) == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="no reference answer"):
        exact_match([[]], ["5"], {"reference": [None]})
    with pytest.raises(ValueError, match="no reference answer"):
        exact_match([[]], ["5"], {})

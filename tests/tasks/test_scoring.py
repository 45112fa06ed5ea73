"""Scorers on hand-made predictions: RULER's string matches and the final-number rule."""

import pytest

from ctxsparse.tasks import Sample, score
from ctxsparse.tasks.scoring import extract_number, number_match, string_match_all, string_match_part


def test_string_match_all_is_the_fraction_found_case_insensitive():
    assert string_match_all("The numbers are 123 and abc-DEF.", ["123", "ABC-def"]) == 1.0
    assert string_match_all("only 123", ["123", "456", "789", "000"]) == 0.25
    assert string_match_all("nothing", ["123"]) == 0.0


def test_string_match_part_is_any_reference():
    assert string_match_part("It was Paris.", ["London", "paris"]) == 1.0
    assert string_match_part("It was Rome.", ["London", "Paris"]) == 0.0


def test_control_characters_do_not_glue_words():
    assert string_match_all("12\x0034", ["12", "34"]) == 1.0
    assert string_match_all("1\n2", ["12"]) == 0.0


def test_empty_references_are_an_error():
    with pytest.raises(ValueError):
        string_match_all("x", [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("First 3 apples, then 4. The answer is 12.", 12.0),
        ("The answer is 7 apples, 2 more than 5.", 7.0),
        ("answer is 3. Wait, recheck... The answer is: $1,234.", 1234.0),
        ("so we get 5 + 6 = 11", 11.0),
        ("the result is \\boxed{42} and 7 steps", 42.0),
        ("The answer is -3.5", -3.5),
        ("no digits here", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_number_match():
    assert number_match("Step 1: 20 - 6 = 14. The answer is 37.", ["37"]) == 1.0
    assert number_match("The answer is 37.0", ["37"]) == 1.0
    assert number_match("The answer is 36. Oh, 37 maybe", ["37"]) == 0.0
    assert number_match("I do not know", ["37"]) == 0.0


def test_score_dispatches_on_metric():
    def make(metric):
        return Sample("t", 0, "c", "q", ("12", "34"), metric)

    assert score("12", make("string_match_all")) == 0.5
    assert score("12", make("string_match_part")) == 1.0
    assert score("The answer is 34", make("number")) == 1.0
    with pytest.raises(ValueError, match="unknown metric"):
        score("12", make("bleu"))

import pytest
from roman import to_roman


@pytest.mark.parametrize(
    "n,text",
    [(4, "IV"), (9, "IX"), (14, "XIV"), (40, "XL"), (90, "XC"), (400, "CD"), (1994, "MCMXCIV"), (3999, "MMMCMXCIX")],
)
def test_subtractive(n, text):
    assert to_roman(n) == text


def test_range():
    with pytest.raises(ValueError):
        to_roman(0)

import pytest
from timefmt import format_duration


def test_negative():
    with pytest.raises(ValueError):
        format_duration(-1)

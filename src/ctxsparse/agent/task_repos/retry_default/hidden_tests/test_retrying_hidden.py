import pytest
from retrying import retry


def test_default_is_three_attempts():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("boom")
        return "done"

    assert retry(flaky) == "done"
    assert len(calls) == 3


def test_default_gives_up_after_three():
    calls = []

    def broken():
        calls.append(1)
        raise OSError("always")

    with pytest.raises(OSError):
        retry(broken)
    assert len(calls) == 3


def test_zero_attempts_refused():
    with pytest.raises(ValueError):
        retry(lambda: 1, attempts=0)

import pytest
from sizes import parse_size


def test_case_insensitive():
    assert parse_size("10KB") == 10240
    assert parse_size("2Gb") == 2 * 1024**3


def test_megabytes_binary():
    assert parse_size("1mb") == 1024 * 1024
    assert parse_size("1.5 MB") == 1572864


def test_unknown_unit():
    with pytest.raises(ValueError):
        parse_size("3 parsecs")

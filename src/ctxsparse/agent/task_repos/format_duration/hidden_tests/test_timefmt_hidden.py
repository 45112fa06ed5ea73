from timefmt import format_duration


def test_padding():
    assert format_duration(3661) == "01:01:01"
    assert format_duration(0) == "00:00:00"
    assert format_duration(59) == "00:00:59"


def test_long():
    assert format_duration(25 * 3600) == "25:00:00"
    assert format_duration(100 * 3600 + 61) == "100:01:01"

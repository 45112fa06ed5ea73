from sizes import parse_size


def test_kb_lower():
    assert parse_size("10kb") == 10240


def test_bytes():
    assert parse_size("12") == 12

from merging import merge


def test_flat():
    assert merge({"a": 1, "b": 2}, {"b": 3}) == {"a": 1, "b": 3}

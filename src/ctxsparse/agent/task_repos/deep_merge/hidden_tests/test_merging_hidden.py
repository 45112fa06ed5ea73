from merging import merge


def test_nested():
    assert merge({"db": {"host": "a", "port": 1}}, {"db": {"port": 2}}) == {"db": {"host": "a", "port": 2}}


def test_deeper_and_new_keys():
    base = {"x": {"y": {"z": 1, "w": 2}}, "keep": True}
    out = merge(base, {"x": {"y": {"z": 5}, "n": 0}})
    assert out == {"x": {"y": {"z": 5, "w": 2}, "n": 0}, "keep": True}


def test_inputs_untouched():
    base, over = {"d": {"a": 1}}, {"d": {"b": 2}}
    merge(base, over)
    assert base == {"d": {"a": 1}} and over == {"d": {"b": 2}}


def test_non_dict_replaces():
    assert merge({"a": {"b": 1}}, {"a": 3}) == {"a": 3}

from settings import load_settings


def test_timeout_read():
    assert load_settings('{"timeout": 5}')["timeout"] == 5.0


def test_timeout_default():
    assert load_settings("{}")["timeout"] == 30.0


def test_other_keys_unchanged():
    s = load_settings('{"host": "example", "timeout": 1.5, "extra": true}')
    assert s["host"] == "example" and s["timeout"] == 1.5 and s["extra"] is True

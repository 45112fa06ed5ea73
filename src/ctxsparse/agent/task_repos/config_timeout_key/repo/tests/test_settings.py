from settings import load_settings


def test_defaults():
    s = load_settings("")
    assert s["host"] == "localhost" and s["port"] == 8080


def test_port():
    assert load_settings('{"port": "9000"}')["port"] == 9000

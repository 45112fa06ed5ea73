"""Read service settings from JSON text, filling in defaults."""

import json

DEFAULTS = {"host": "localhost", "port": 8080, "timeout": 30}


def load_settings(text: str) -> dict:
    """Parse JSON settings; unknown keys are kept, missing ones take their defaults."""
    raw = json.loads(text) if text.strip() else {}
    settings = dict(raw)
    settings["host"] = raw.get("host", DEFAULTS["host"])
    settings["port"] = int(raw.get("port", DEFAULTS["port"]))
    settings["timeout"] = float(raw.get("time_out", DEFAULTS["timeout"]))
    return settings

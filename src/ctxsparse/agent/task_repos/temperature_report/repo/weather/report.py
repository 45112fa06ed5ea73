"""Lines of the daily report."""

from weather.convert import celsius_to_fahrenheit


def _one(value: float) -> str:
    return f"{round(value)}"


def report_line(celsius: float) -> str:
    """'21.4 °C / 70.6 °F' (one decimal each)."""
    return f"{_one(celsius)} °C / {_one(celsius_to_fahrenheit(celsius))} °F"

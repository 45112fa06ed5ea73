import pytest
from weather.convert import celsius_to_fahrenheit
from weather.report import report_line


def test_conversion():
    assert celsius_to_fahrenheit(100) == pytest.approx(212)
    assert celsius_to_fahrenheit(-40) == pytest.approx(-40)


def test_report_lines():
    assert report_line(0) == "0.0 °C / 32.0 °F"
    assert report_line(21.44) == "21.4 °C / 70.6 °F"

from weather.report import report_line


def test_has_both_units():
    line = report_line(10)
    assert "°C" in line and "°F" in line

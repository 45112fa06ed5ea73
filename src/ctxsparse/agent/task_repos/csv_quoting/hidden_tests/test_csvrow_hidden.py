import csv
import io

from csvrow import to_csv_row


def test_comma_quoted():
    assert to_csv_row(["a,b", "c"]) == '"a,b",c'


def test_quote_doubled():
    assert to_csv_row(['he said "hi"']) == '"he said ""hi"""'


def test_round_trip():
    fields = ["x", "y,z", 'q"uote', "line\nbreak", "7"]
    assert next(csv.reader(io.StringIO(to_csv_row(fields)))) == fields

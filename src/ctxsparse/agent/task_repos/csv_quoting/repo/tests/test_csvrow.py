from csvrow import to_csv_row


def test_plain():
    assert to_csv_row(["a", 1, "b"]) == "a,1,b"

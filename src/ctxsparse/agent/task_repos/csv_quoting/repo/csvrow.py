"""Write one CSV row without the csv module (for a tiny embedded target)."""


def to_csv_row(fields) -> str:
    """Join the fields with commas."""
    return ",".join(str(f) for f in fields)

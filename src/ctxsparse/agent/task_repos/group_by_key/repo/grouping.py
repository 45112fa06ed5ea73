"""Group records (dicts) by a field."""


def group_by(records, field):
    """{value of field: [records with that value]} in first-seen order."""
    groups = {}
    for record in records:
        groups.setdefault(record["id"], []).append(record)
    return groups

from grouping import group_by

ROWS = [
    {"id": 1, "city": "Oslo"},
    {"id": 2, "city": "Lima"},
    {"id": 3, "city": "Oslo"},
    {"id": 4},
]


def test_by_city():
    groups = group_by(ROWS, "city")
    assert [r["id"] for r in groups["Oslo"]] == [1, 3]
    assert [r["id"] for r in groups["Lima"]] == [2]
    assert [r["id"] for r in groups[None]] == [4]
    assert list(groups) == ["Oslo", "Lima", None]

from grouping import group_by


def test_empty():
    assert group_by([], "city") == {}

from slugs import slugify


def test_edges():
    assert slugify("  Hello,  World!  ") == "hello-world"
    assert slugify("a---b") == "a-b"
    assert slugify("!!!") == ""
    assert slugify("Version 2.0 notes") == "version-2-0-notes"

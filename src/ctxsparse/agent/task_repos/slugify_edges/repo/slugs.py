"""URL slugs from titles."""


def slugify(title: str) -> str:
    """Lower-case words joined by single hyphens; anything not a letter or digit separates words."""
    out = []
    for ch in title.lower():
        out.append(ch if ch.isalnum() else "-")
    return "".join(out).replace("--", "-")

"""Reference fixes for the shipped coding tasks, kept in the tests (never shipped to the agent).

Each fix is a list of (file in repo/, old text, new text) replacements.
"""

FIXES: dict[str, list[tuple[str, str, str]]] = {
    "page_count": [("pagination.py", "return total // per_page", "return -(-total // per_page)")],
    "retry_default": [
        ("retrying.py", "attempts=0,", "attempts=3,"),
        (
            "retrying.py",
            "    error = None\n",
            '    if attempts < 1:\n        raise ValueError("attempts must be >= 1")\n    error = None\n',
        ),
    ],
    "median_even": [
        (
            "stats.py",
            "    ordered = sorted(values)\n    return ordered[len(ordered) // 2]",
            "    if not values:\n        raise ValueError('median() of an empty list')\n"
            "    ordered = sorted(values)\n    mid = len(ordered) // 2\n"
            "    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2",
        )
    ],
    "config_timeout_key": [("settings.py", 'raw.get("time_out"', 'raw.get("timeout"')],
    "format_duration": [("timefmt.py", 'f"{hours}:{minutes}:{secs}"', 'f"{hours:02d}:{minutes:02d}:{secs:02d}"')],
    "size_units": [
        ("sizes/units.py", '"mb": 1000 * 1000', '"mb": 1024 * 1024'),
        ("sizes/parse.py", 'unit = unit or "b"', 'unit = (unit or "b").lower()'),
    ],
    "slugify_edges": [
        (
            "slugs.py",
            '    return "".join(out).replace("--", "-")',
            '    return "-".join(part for part in "".join(out).split("-") if part)',
        )
    ],
    "csv_quoting": [
        (
            "csvrow.py",
            '    return ",".join(str(f) for f in fields)',
            "    def quote(text):\n"
            "        if any(c in text for c in ',\"\\n'):\n"
            "            return '\"' + text.replace('\"', '\"\"') + '\"'\n"
            "        return text\n\n"
            '    return ",".join(quote(str(f)) for f in fields)',
        )
    ],
    "deep_merge": [
        (
            "merging.py",
            "    result.update(override)\n",
            "    for key, value in override.items():\n"
            "        if isinstance(value, dict) and isinstance(result.get(key), dict):\n"
            "            result[key] = merge(result[key], value)\n"
            "        else:\n"
            "            result[key] = value\n",
        )
    ],
    "roman_numerals": [
        (
            "roman.py",
            '(1000, "M"), (500, "D"), (100, "C"), (50, "L"), (10, "X"), (5, "V"), (1, "I")',
            '(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"), (40, "XL"), '
            '(10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")',
        )
    ],
    "group_by_key": [("grouping.py", 'record["id"]', "record.get(field)")],
    "chunked_tail": [("chunks.py", "len(items) - size + 1", "len(items)")],
    "temperature_report": [
        ("weather/convert.py", "celsius * 5 / 9 + 32", "celsius * 9 / 5 + 32"),
        ("weather/report.py", 'f"{round(value)}"', 'f"{value:.1f}"'),
    ],
    "word_frequency": [
        (
            "wordfreq.py",
            "    return Counter(text.split()).most_common(n)",
            '    words = (w.strip(".,!?;:()-\'\\"").lower() for w in text.split())\n'
            "    return Counter(w for w in words if w).most_common(n)",
        )
    ],
}

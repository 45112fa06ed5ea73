"""One self-contained HTML page: inline CSS, tables, and the PNG plots embedded as base64 data URIs.

Nothing is fetched: no scripts, no stylesheets, no links to other pages or files.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from ctxsparse.study.report_tables import DETAIL_HEADER, Cell, detail_groups, detail_rows, groups_by_model, summary_grid

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; text-align: right; }
th { background: #f3f3f5; } td:first-child, th:first-child { text-align: left; }
tr.dense td { background: #f7f7ee; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.meta { color: #555; } code { background: #f3f3f5; padding: 0 3px; }
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], dense_first: bool = True) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cls = ' class="dense"' if dense_first and row and row[0].startswith("dense") else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def render_html(
    cells: Sequence[Cell], plots: Sequence[Path], meta: dict[str, str], notes: Sequence[str], title: str
) -> str:
    """The whole page as a string."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p class='meta'>"
        + "<br>".join(f"<b>{html.escape(k)}</b>: {html.escape(str(v))}" for k, v in meta.items())
        + "</p>",
        "<h2>Summary: accuracy (%)</h2>",
    ]
    for (model, dtype), members in groups_by_model(cells).items():
        header, rows = summary_grid(members)
        parts += [f"<h3>{html.escape(model)} ({html.escape(dtype)})</h3>", _table(header, rows)]
    parts.append("<h2>Plots</h2>")
    for png in plots:
        parts.append(f'<figure><img alt="{html.escape(png.stem)}" src="{data_uri(png)}"></figure>')
    parts.append("<h2>Results per task</h2>")
    for (model, dtype, task, length), members in detail_groups(cells).items():
        parts.append(f"<h3>{html.escape(model)} ({html.escape(dtype)}) — {html.escape(task)} @ {length} tokens</h3>")
        parts.append(_table(DETAIL_HEADER, detail_rows(members)))
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)

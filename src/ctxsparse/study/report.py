"""`ctxsparse report`: a study database -> report.md, results.csv, results.json, PNG plots, report.html."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ctxsparse.study.pairing import split_stale
from ctxsparse.study.report_agent import has_episodes, write_agent_report
from ctxsparse.study.report_html import render_html
from ctxsparse.study.report_plots import write_plots
from ctxsparse.study.report_tables import (
    DETAIL_HEADER,
    Cell,
    aggregate,
    detail_groups,
    detail_rows,
    groups_by_model,
    markdown_table,
    summary_grid,
    summary_text,
)
from ctxsparse.study.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from ctxsparse.study.store import StudyStore
from ctxsparse.versions import versions

NOTES = (
    "Accuracy is the mean task score (0..1, shown in %) over samples; n counts (sample, seed) pairs.",
    "95% confidence intervals: Wilson score interval when every score in the cell is 0 or 1; otherwise a "
    f"percentile bootstrap of the mean ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}).",
    "Retention = sparse accuracy / dense accuracy, both over the samples the sparse cell has (paired: same "
    "sample, seed and sample_hash; 'pairs' counts them); undefined (empty, and said so in the retention plot) "
    "when the dense accuracy is 0 or the dense rows are missing. Stale rows (made from a text the generator no "
    "longer makes) are left out and counted.",
    "Δ vs dense (paired) = mean of (sparse score - dense score) over the samples both have, in accuracy points, with "
    "a 95% interval; n counts those pairs. For 0/1 scores the p-value is the exact two-sided McNemar test on the "
    "discordant pairs and the interval maps the exact (Clopper-Pearson) interval of the discordant split onto the "
    f"difference; for fractional scores both come from a paired bootstrap ({BOOTSTRAP_RESAMPLES} resamples, seed "
    f"{BOOTSTRAP_SEED}; p = share of re-centred resample means at least as far from 0 as the observed one).",
    "Summary cells read 'accuracy (n)': n is the number of samples in that cell.",
    "Density = selected / visible tokens per head and step; mass recall = share of the dense attention "
    "probability mass on the selected tokens; output error = relative L2 error of each attention output "
    "vs dense; all three are means over sparse attention calls (layers, heads, steps).",
    "KL = KL(dense || sparse) of next-token distributions with the generated tokens teacher forced through a "
    "dense copy of the cache; top-1 agreement = share of those positions where both pick the same token.",
    "The dense rows are exact by definition (density 1, mass recall 1, error 0, KL 0, agreement 1).",
    "Phase 'question': question and answer tokens decode sparsely; 'decode': the question is read densely "
    "and only generated tokens are sparse. Dense rows have phase 'any'.",
)

CSV_FIELDS = [f for f in Cell.__dataclass_fields__]


@dataclass
class Report:
    """Where the files went, and the cells they were built from."""

    out_dir: Path
    markdown: Path
    csv: Path
    json: Path
    html: Path
    plots: list[Path] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)

    def summary(self) -> str:
        return summary_text(self.cells)


def _configurations(rows: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for r in rows:
        c = seen.setdefault(
            r["config_hash"],
            {k: r[k] for k in ("config_hash", "model", "method", "spec", "sparsity", "phase", "dtype")}
            | {"params": json.loads(r["params"]), "rows": 0, "tasks": []},
        )
        c["rows"] += 1
        if r["task"] not in c["tasks"]:
            c["tasks"].append(r["task"])
    return list(seen.values())


def _markdown(cells: list[Cell], plots: list[Path], meta: dict[str, str]) -> str:
    lines = ["# ctxsparse study report", ""]
    lines += [f"- **{k}**: {v}" for k, v in meta.items()]
    lines += ["", "## Summary: accuracy (%)", ""]
    for (model, dtype), members in groups_by_model(cells).items():
        header, rows = summary_grid(members)
        lines += [f"### {model} ({dtype})", "", markdown_table(header, rows), ""]
    lines += ["## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Results per task", ""]
    for (model, dtype, task, length), members in detail_groups(cells).items():
        lines += [f"### {model} ({dtype}) — {task} @ {length} tokens", ""]
        lines += [markdown_table(DETAIL_HEADER, detail_rows(members)), ""]
    lines += ["## Notes", ""] + [f"- {n}" for n in NOTES] + [""]
    return "\n".join(lines)


def _write_csv(cells: list[Cell], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS + ["label"])
        writer.writeheader()
        for c in cells:
            writer.writerow(c.as_dict() | {"label": c.label})


def write_report(db: str | os.PathLike, out_dir: str | os.PathLike) -> Report:
    """Read the study database (never writing to it beyond SQLite's own WAL bookkeeping) and write the report."""
    if has_episodes(db):  # a database written by `ctxsparse agent`: the agentic report
        return write_agent_report(db, out_dir)
    out = Path(out_dir)
    with StudyStore.open(db, create=False) as store:
        freshness = split_stale(store.rows(), store.sample_hashes())
        runs = store.runs()
    rows = freshness.fresh
    if not rows and freshness.stale:
        raise ValueError(freshness.message(db))
    if not rows:
        raise ValueError(f"{db} holds no results yet; run `ctxsparse study --db {db} ...` first.")
    out.mkdir(parents=True, exist_ok=True)
    cells = aggregate(rows)
    plots = write_plots(cells, out)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    current = versions()
    meta = {
        "database": str(db),
        "created": created,
        "rows": str(len(rows)),
        "models": ", ".join(dict.fromkeys(r["model"] for r in rows)),
        "study runs": str(len(runs)),
        "stale rows left out": str(len(freshness.stale)),
        "versions": ", ".join(f"{k} {v}" for k, v in current.items() if k != "platform"),
    }
    report = Report(
        out, out / "report.md", out / "results.csv", out / "results.json", out / "report.html", plots, cells
    )
    report.markdown.write_text(_markdown(cells, plots, meta), encoding="utf-8")
    _write_csv(cells, report.csv)
    payload = {
        "created": created,
        "database": str(db),
        "versions": current,
        "models": list(dict.fromkeys(r["model"] for r in rows)),
        "runs": runs,
        "configurations": _configurations(rows),
        "results": [c.as_dict() | {"label": c.label} for c in cells],
        "notes": list(NOTES),
    }
    report.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    page = render_html(cells, plots, meta, NOTES, "ctxsparse study report")
    report.html.write_text(page, encoding="utf-8")
    return report

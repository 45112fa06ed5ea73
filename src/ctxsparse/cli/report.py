"""`ctxsparse report`: tables, plots and one HTML page from a study database."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write Markdown, CSV, JSON, PNG plots and an HTML page from a study database",
        description="Aggregate a study database per (model, task, length, method, sparsity): accuracy with 95% "
        "intervals, retention vs dense, fidelity metrics; write report.md, results.csv, results.json, "
        "*_vs_sparsity-*.png and a self-contained report.html.",
    )
    p.add_argument("db", help="the results database written by `ctxsparse study`")
    p.add_argument("--out", "--output_path", dest="out", help="report folder (default: <db>-report)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ctxsparse.study.report import write_report

    db = Path(args.db)
    out = Path(args.out) if args.out else db.with_name(db.stem + "-report")
    report = write_report(db, out)
    print(report.summary())
    print(f"\nreport: {report.html} (also report.md, results.csv, results.json, plots in {report.out_dir})")
    return 0

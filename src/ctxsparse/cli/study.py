"""`ctxsparse study`: run the sparsity grid into a resumable SQLite database, then report on it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ctxsparse.cli.interrupts import rows_saved
from ctxsparse.tasks.truncation import TRUNCATE_HELP, TRUNCATE_RULES

METHODS_HELP = (
    "selector specs, as make_selector reads them. Separate methods with ';' "
    "('dense;oracle_topk;sink_window:sink=4,window=64'), or with ',' where a 'key=value' item continues the "
    "method before it ('dense,oracle_topk,sink_window:sink=4,window=64' is the same three), or repeat "
    "--method. Dense always runs once per sample (sparsity 1); sparse methods run at every sparsity > 1."
)

EPILOG = """examples:
  ctxsparse study --model smollm2-135m --tasks niah_single,vt \\
      --methods "dense;oracle_topk;sink_window:sink=4,window=64" \\
      --sparsity 1,10,20,50,100 --lengths 2048,4096 --samples 10 --db results.db
  ctxsparse study ... --method oracle_topk --method sink_window:sink=4,window=64 --limit 2   # try 2 samples first
  ctxsparse report results.db --out report/

Every finished (configuration, sample) is committed to --db at once; rerunning the same command skips what
is done (a killed run loses only rows in flight). The report (Markdown, CSV, JSON, PNG, HTML) goes to
--report (alias --output_path), by default <db name>-report next to the database."""


def add_study_options(p: argparse.ArgumentParser) -> None:
    """The grid and run options (shared with the demo verb)."""
    p.add_argument(
        "--model",
        action="append",
        help="model name, repeatable or comma separated: built-in (smollm2-135m), random:<shape>, hub id, local "
        "path (default smollm2-135m)",
    )
    p.add_argument("--tasks", default="niah_single", help="comma-separated task names (default niah_single)")
    p.add_argument("--methods", action="append", help=METHODS_HELP)
    p.add_argument("--method", action="append", dest="methods", help="one method spec (repeatable)")
    p.add_argument("--sparsity", default="1,10,20,50,100", help="comma-separated sparsity levels N/k")
    p.add_argument("--lengths", default="2048", help="comma-separated context lengths in tokens")
    p.add_argument("--samples", type=int, default=10, help="samples generated per (task, length) (default 10)")
    p.add_argument(
        "--limit", type=float, help="run only the first L samples per (task, length) now (or a fraction < 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the task generators (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 or auto (the model's own)")
    p.add_argument(
        "--phase",
        choices=("question", "decode"),
        default="question",
        help="question: question and answer tokens run sparse; decode: only generated tokens",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        help="cap on generated tokens per answer (default: each task's own; a cap is part of the configuration)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--truncate", choices=TRUNCATE_RULES, default="none", help=TRUNCATE_HELP)
    p.add_argument(
        "--rerun-stale",
        action="store_true",
        help="delete and run again the stored rows whose sample text the task generator no longer makes",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="run models x methods x sparsity x tasks x lengths x samples into a results database",
        description="Run the sparsity study: each sample's context is prefilled densely once and every "
        "(method, sparsity) decodes from a copy of that cache. Results go to a resumable SQLite database.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_study_options(p)
    p.add_argument("--db", default="results.db", help="results database (created, or resumed; default results.db)")
    p.add_argument("--report", "--output_path", dest="report", help="report folder (default: <db>-report)")
    p.add_argument("--no-report", action="store_true", help="do not write a report at the end")
    p.set_defaults(run=run, interrupt_note=lambda args: rows_saved(Path(args.db)))


def plan_from(args: argparse.Namespace):
    """A StudyPlan from parsed options (raises ValueError with what to change)."""
    from ctxsparse.study.plan import StudyPlan, parse_numbers, split_methods

    models = [m.strip() for value in (args.model or ["smollm2-135m"]) for m in value.split(",") if m.strip()]
    methods = split_methods(args.methods or ["dense;oracle_topk"])
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    return StudyPlan.build(
        models,
        methods,
        parse_numbers(args.sparsity),
        tasks,
        parse_numbers(args.lengths, int),
        samples=args.samples,
        seed=args.seed,
        phase=args.phase,
        dtype=args.dtype,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
    )


def default_report_dir(db: Path) -> Path:
    return db.with_name(db.stem + "-report")


def run_study(args: argparse.Namespace, db: Path, report_dir: Path | None, argv: list[str]) -> int:
    """Validate everything cheap first (names, limits, database), then load models, run, print the summary."""
    args.interrupt_note = lambda _args: rows_saved(db)
    from ctxsparse.models import check_device, max_positions, parse_dtype
    from ctxsparse.study.backend import TransformersBackend
    from ctxsparse.study.pairing import split_stale
    from ctxsparse.study.report import write_report
    from ctxsparse.study.report_tables import aggregate, summary_text
    from ctxsparse.study.run_lock import study_lock
    from ctxsparse.study.runner import StudyRunner
    from ctxsparse.study.sample_check import check_file_tasks, check_samples, describe
    from ctxsparse.study.store import StudyStore, preflight
    from ctxsparse.tasks import get_task

    plan = plan_from(args)
    parse_dtype(args.dtype)
    check_device(args.device)
    plan.check_positions(max_positions)
    runner = StudyRunner(
        plan,
        TransformersBackend(args.device, args.dtype),
        get_task=lambda name: get_task(name, truncate=args.truncate),
        progress=not args.no_progress,
    )
    runner.check_names()
    preflight(db)
    print(f"loading {', '.join(plan.models)} ...", file=sys.stderr)
    runner.open_models()
    check_file_tasks(plan, runner.tasks, runner._session(plan.models[-1]).tokenizer)
    hashes = {c.hash for m in plan.models for c in plan.configs(m)}
    with StudyStore.open(db) as store, study_lock(db):
        check = check_samples(store, plan, runner.tasks, lambda m: runner._session(m).tokenizer, args.rerun_stale)
        if check.stale:
            print(describe(check, db), file=sys.stderr)
        print(f"study: {plan.size()} rows in the grid, database {db} ({store.count()} rows stored)", file=sys.stderr)
        outcome = runner.run(store, argv=argv)
        rows = [
            r
            for r in store.rows()
            if r["config_hash"] in hashes and r["task"] in plan.tasks and r["length"] in plan.lengths
        ]
        rows = split_stale(rows, store.sample_hashes()).fresh
    print(
        f"study: {outcome.written} rows written, {outcome.skipped} already done, {outcome.prefills} prefills, "
        f"{outcome.wall_s:.1f}s",
        file=sys.stderr,
    )
    print(summary_text(aggregate(rows)))
    if report_dir is not None:
        report = write_report(db, report_dir)
        print(f"\nreport: {report.html} (also report.md, results.csv, results.json, plots in {report.out_dir})")
    print(f"database: {db}")
    return 0


def options_argv(verb: str, args: argparse.Namespace) -> list[str]:
    """The parsed options as a command line, stored with each run (reproducible however it was called)."""
    out = [verb]
    for key, value in sorted(vars(args).items()):
        if key in ("run", "verb", "interrupt_note") or value is None or value is False:
            continue
        for item in value if isinstance(value, list) else [value]:
            flag = "--" + key.replace("_", "-")
            out += [flag] if item is True else [flag, str(item)]
    return out


def run(args: argparse.Namespace) -> int:
    db = Path(args.db)
    report_dir = None if args.no_report else Path(args.report) if args.report else default_report_dir(db)
    return run_study(args, db, report_dir, options_argv("study", args))

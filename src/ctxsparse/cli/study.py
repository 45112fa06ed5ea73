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
  ctxsparse study ... --device cuda --batch-size 64            # many samples decoded together per configuration
  ctxsparse study ... --device cuda --decode-path engine       # ... through ctxsparse.Engine (the default on CUDA)
  ctxsparse study ... --device cuda --executor ray              # one Ray actor per GPU of this machine
  ctxsparse study ... --executor ray --ray-address auto         # join a running Ray cluster

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
    p.add_argument(
        "--batch-size",
        type=int,
        help="samples of a (task, length) decoded together per configuration (default: 1 on CPU, 64 on CUDA)",
    )
    p.add_argument(
        "--decode-path",
        choices=("auto", "engine", "transformers"),
        default="auto",
        help="engine: decode through ctxsparse.Engine (static paged cache, CUDA graphs; Llama, Mistral, Qwen2/3); "
        "transformers: batched transformers calls; auto (default): the engine on CUDA where it serves the model",
    )
    p.add_argument(
        "--no-fidelity",
        action="store_true",
        help="engine path: skip the dense teacher-forced pass that measures KL and top-1 agreement",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="make a missing Double Sparsity calibration before the study (cached; without it the study stops)",
    )
    p.add_argument(
        "--full-answers",
        action="store_true",
        help="decode every answer to its token cap (default: stop once the task's scorer can no longer change "
        "its verdict)",
    )
    ray = p.add_argument_group("executor")
    ray.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: one Ray actor per GPU or CPU slot (pip install 'ctxsparse[ray]')",
    )
    ray.add_argument(
        "--ray-address",
        help="join a running Ray cluster ('auto' or host:port); default: start Ray on this machine",
    )
    ray.add_argument(
        "--gpus-per-worker",
        type=float,
        help="GPUs per Ray actor (default: 1 with a CUDA --device, else 0 = one actor per CPU)",
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


def batch_size_for(args: argparse.Namespace) -> int:
    """--batch-size, or 1 on CPU and 64 on CUDA devices."""
    size = args.batch_size if args.batch_size is not None else (64 if args.device.startswith("cuda") else 1)
    if size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {size}.")
    return size


def make_executor(args: argparse.Namespace, runner):
    """None for --executor local; a connected RayExecutor for ray (errors here come before any model loads)."""
    if args.executor == "local":
        if args.ray_address or args.gpus_per_worker is not None:
            raise ValueError("--ray-address and --gpus-per-worker need --executor ray.")
        return None
    from ctxsparse.study.executors.ray import RayExecutor

    gpus = args.gpus_per_worker if args.gpus_per_worker is not None else (1 if args.device.startswith("cuda") else 0)
    if args.device.startswith("cuda:"):
        raise ValueError("With --executor ray give --device cuda: each actor gets its own GPU(s).")
    executor = RayExecutor(
        runner.plan,
        runner.backend,
        runner.get_task,
        address=args.ray_address,
        gpus_per_worker=gpus,
        batch_size=runner.batch_size,
        stop_at_verdict=runner.stop_at_verdict,
        progress=runner.progress,
    )
    workers = executor.connect()
    print(f"ray: {workers} workers ({gpus:g} GPU each)", file=sys.stderr)
    return executor


def run_study(
    args: argparse.Namespace,
    db: Path,
    report_dir: Path | None,
    argv: list[str],
    summary: bool = True,
    deadline: float | None = None,
) -> int:
    """Validate everything cheap first (names, limits, database, executor), then load models, run, print the
    summary (summary=False: only the one-line count). deadline (time.monotonic()): start no new work after it."""
    args.interrupt_note = lambda _args: rows_saved(db)
    from ctxsparse.models import check_device, max_positions, parse_dtype
    from ctxsparse.study.backend import TransformersBackend
    from ctxsparse.study.report import write_report
    from ctxsparse.study.report_tables import aggregate, summary_text
    from ctxsparse.study.runner import StudyRunner
    from ctxsparse.study.store import preflight
    from ctxsparse.tasks import get_task

    plan = plan_from(args)
    parse_dtype(args.dtype)
    check_device(args.device)
    plan.check_positions(max_positions)
    runner = StudyRunner(
        plan,
        TransformersBackend(args.device, args.dtype, args.decode_path, args.phase, fidelity=not args.no_fidelity),
        get_task=lambda name: get_task(name, truncate=args.truncate),
        progress=not args.no_progress,
        batch_size=batch_size_for(args),
        stop_at_verdict=not args.full_answers,
        calibrate=args.calibrate,
    )
    runner.check_names()
    preflight(db)
    executor = make_executor(args, runner)
    try:
        # The driver loads the models too: the sample-identity checks read their tokenizers.
        print(f"loading {', '.join(plan.models)} ...", file=sys.stderr)
        runner.open_models()
        outcome, rows = _run(runner, executor, db, argv, args.rerun_stale, deadline)
    finally:
        if executor is not None:
            executor.close()
    print(
        f"study: {outcome.written} rows written, {outcome.skipped} already done, {outcome.prefills} prefills, "
        f"{outcome.wall_s:.1f}s ({outcome.rows_per_s:.2f} rows/s, executor {outcome.executor})",
        file=sys.stderr,
    )
    if outcome.pending:
        print(
            f"study: stopped at the time budget with {outcome.pending} rows to go; run the same command to "
            "finish them.",
            file=sys.stderr,
        )
    if not summary:
        return 0
    print(summary_text(aggregate(rows)))
    if report_dir is not None:
        report = write_report(db, report_dir)
        print(f"\nreport: {report.html} (also report.md, results.csv, results.json, plots in {report.out_dir})")
    print(f"database: {db}")
    return 0


def _run(runner, executor, db: Path, argv: list[str], rerun_stale: bool, deadline: float | None = None):
    """Check the stored samples, run into the database under its lock; (outcome, this plan's fresh rows)."""
    from ctxsparse.study.pairing import split_stale
    from ctxsparse.study.run_lock import study_lock
    from ctxsparse.study.runner import task_label
    from ctxsparse.study.sample_check import check_file_tasks, check_samples, describe
    from ctxsparse.study.store import StudyStore

    plan = runner.plan
    tokenizer = lambda model: runner.session(model).tokenizer
    check_file_tasks(plan, runner.tasks, tokenizer(plan.models[-1]))
    hashes = {c.hash for m in plan.models for c in plan.configs(m)}
    tasks = {task_label(t) for t in plan.tasks}
    with StudyStore.open(db) as store, study_lock(db):
        check = check_samples(store, plan, runner.tasks, tokenizer, rerun_stale)
        if check.stale:
            print(describe(check, db), file=sys.stderr)
        print(f"study: {plan.size()} rows in the grid, database {db} ({store.count()} rows stored)", file=sys.stderr)
        outcome = runner.run(store, argv=argv, executor=executor, deadline=deadline)
        rows = [
            r for r in store.rows() if r["config_hash"] in hashes and r["task"] in tasks and r["length"] in plan.lengths
        ]
        rows = split_stale(rows, store.sample_hashes()).fresh
    return outcome, rows


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

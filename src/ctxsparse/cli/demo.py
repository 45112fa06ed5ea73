"""`ctxsparse demo`: a quick sparsity study on the embedded model, ending with the summary table and report.

Three tasks at 2048 tokens (single needle, variable tracking, multi-hop), dense vs oracle top-k and
sink+window at 10x and 50x, up to 3 samples each, sized to a time budget (default 150 s): the first sample
of every cell runs first, its time says how many samples per cell fit, and the rest follow until the budget
is spent (no new work starts after it; rerunning the demo resumes). Each answer
stops once its task's scorer can no longer change the verdict; the samples of a cell decode together.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ctxsparse.cli.study import add_study_options, run_study

DEMO_TASKS = "niah_single,vt,multihop"
DEMO_METHODS = "dense;oracle_topk;sink_window:sink=4,window=64"
DEMO_SPARSITY = "10,50"
DEMO_LENGTHS = "2048"
DEMO_SAMPLES = 3
DEMO_DIR = "ctxsparse-demo"
DEMO_BUDGET_S = 150.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="a quick sparsity study on the embedded model (summary table and HTML report)",
        description=f"A quick `ctxsparse study`: tasks {DEMO_TASKS} at {DEMO_LENGTHS} tokens, methods "
        f"{DEMO_METHODS.replace(';', ', ')} at {DEMO_SPARSITY.replace(',', 'x, ')}x sparsity, {DEMO_SAMPLES} "
        "samples each, on the embedded SmolLM2-135M. Every study option can be overridden.",
    )
    add_study_options(p)
    p.set_defaults(
        tasks=DEMO_TASKS,
        methods=None,
        sparsity=DEMO_SPARSITY,
        lengths=DEMO_LENGTHS,
        samples=DEMO_SAMPLES,
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=DEMO_BUDGET_S,
        help=f"wall-time budget that sizes the samples per cell (default {DEMO_BUDGET_S:g}; 0 = run every sample)",
    )
    p.add_argument(
        "--out",
        default=DEMO_DIR,
        help=f"folder for results.db and report/ (default: ./{DEMO_DIR}; an existing demo folder is resumed)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ctxsparse.cli.study import options_argv

    args.methods = args.methods or [DEMO_METHODS]
    if args.batch_size is None:
        args.batch_size = args.samples
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db, report = out / "results.db", out / "report"
    start = time.perf_counter()
    deadline = None
    per_cell = args.samples if args.limit is None else args.limit
    if args.limit is None and args.budget_s > 0 and args.samples > 1:
        # The first sample of every cell (model loading included) prices one sample per cell.
        args.limit = 1
        code = run_study(args, db, None, options_argv("demo", args), summary=False)
        if code != 0:
            return code
        first = time.perf_counter() - start
        per_cell = max(1, min(args.samples, int(args.budget_s // max(first, 1e-6))))
        print(f"demo: first sample per cell took {first:.0f}s; {per_cell} sample(s) per cell fit the budget")
        args.limit = per_cell
        # The budget also holds if the machine slows down: no new work starts after it (the rest resumes).
        deadline = time.monotonic() + max(0.0, args.budget_s - first)
    code = run_study(args, db, report, options_argv("demo", args), deadline=deadline)
    if code == 0:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"demo wall time: {time.perf_counter() - start:.1f}s for {per_cell} sample(s) per cell "
            f"(budget {args.budget_s:g}s; load average {load:.1f} on {os.cpu_count()} CPUs)"
        )
    return code

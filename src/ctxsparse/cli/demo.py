"""`ctxsparse demo`: a quick sparsity study on the embedded model, ending with the summary table and report.

Three tasks at 2048 tokens (single needle, variable tracking, multi-hop), dense vs oracle top-k and
sink+window at 10x and 50x, 3 samples each: a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ctxsparse.cli.study import add_study_options, run_study

DEMO_TASKS = "niah_single,vt,multihop"
DEMO_METHODS = "dense;oracle_topk;sink_window:sink=4,window=64"
DEMO_SPARSITY = "10,50"
DEMO_LENGTHS = "2048"
DEMO_SAMPLES = 3
DEMO_DIR = "ctxsparse-demo"


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
        "--out",
        default=DEMO_DIR,
        help=f"folder for results.db and report/ (default: ./{DEMO_DIR}; an existing demo folder is resumed)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ctxsparse.cli.study import options_argv

    args.methods = args.methods or [DEMO_METHODS]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    code = run_study(args, out / "results.db", out / "report", options_argv("demo", args))
    if code == 0:
        print(f"demo wall time: {time.perf_counter() - start:.1f}s")
    return code

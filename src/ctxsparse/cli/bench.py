"""`ctxsparse bench <sub-verb>`: GPU benchmarks; each sub-verb is a module of ctxsparse.bench.

A sub-verb module defines DESCRIPTION, add_arguments(parser) and run_cli(args); adding one (say
`pipeline`) is one more entry in SUBVERBS and a module ctxsparse/bench/pipeline.py.
"""

from __future__ import annotations

import argparse
import importlib

SUBVERBS: dict[str, str] = {
    "decode": "ctxsparse.bench.decode",
    "pipeline": "ctxsparse.bench.pipeline",
    "generate": "ctxsparse.bench.generate",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="GPU benchmarks: sparse decode kernels against FlashInfer",
        description="Benchmarks that need a CUDA GPU; results go to benchmarks/results/ as JSON.",
    )
    sub = p.add_subparsers(dest="bench_verb", metavar="<benchmark>")
    for name, module_name in SUBVERBS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=module.DESCRIPTION, description=module.DESCRIPTION)
        module.add_arguments(sp)
        sp.set_defaults(run=module.run_cli)
    p.set_defaults(run=lambda args: _missing(p))


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2

"""`ctxsparse <verb>`: one module per verb under ctxsparse.cli, each with add_parser(subparsers)."""

from __future__ import annotations

import argparse
import importlib
import sys

# Verb modules in the order --help lists them; each defines add_parser(subparsers) and sets a `run` default.
VERBS: tuple[str, ...] = (
    "demo",
    "study",
    "report",
    "replay",
    "agent",
    "calibrate",
    "generate",
    "models",
    "theorem",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctxsparse",
        description="Inference-time context sparsity: run, measure and benchmark sparse decoding.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for verb in VERBS:
        importlib.import_module(f"ctxsparse.cli.{verb}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, OSError, RuntimeError) as err:
        print(f"ctxsparse {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`ctxsparse <verb>`: one module per verb under ctxsparse.cli, each with add_parser(subparsers).

Verb modules are imported inside main(), after the signal handlers are set, and the heavy extension
modules (torch, numpy) with signals held: an interrupt during the (slow) imports ends with the same one
line as one during the work.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ctxsparse.cli.interrupts import exit_code, install_handlers, message, preload

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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or of the verb `only` (imports just that verb's module: a faster start)."""
    parser = argparse.ArgumentParser(
        prog="ctxsparse",
        description="Inference-time context sparsity: run, measure and benchmark sparse decoding.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for verb in VERBS if only is None else (only,):
        importlib.import_module(f"ctxsparse.cli.{verb}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    install_handlers()
    argv = sys.argv[1:] if argv is None else list(argv)
    verb = argv[0] if argv and argv[0] in VERBS else None
    args = None
    try:
        parser = build_parser(verb)
        args = parser.parse_args(argv)
        if not getattr(args, "run", None):
            parser.print_help()
            return 2
        preload(verb)
        return int(args.run(args) or 0)
    except KeyboardInterrupt as err:
        note = getattr(args, "interrupt_note", None)
        print(message(getattr(args, "verb", None) or verb, note(args) if note else None, err), file=sys.stderr)
        return exit_code(err)
    except (ValueError, KeyError, FileNotFoundError, OSError, RuntimeError) as err:
        print(f"ctxsparse {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

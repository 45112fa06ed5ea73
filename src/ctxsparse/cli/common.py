"""Options shared by several verbs: the model, the method and the budget."""

from __future__ import annotations

import argparse

from ctxsparse.budget import Budget
from ctxsparse.user_files import read_user_text


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m", help="built-in name, random:<shape>, hub id or local path")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 or auto (default: the model's)")


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--sparsity", type=float, help="read 1 of every S tokens (k = ceil(N / S)); default 10")
    group.add_argument("--density", type=float, help="read a share d of the tokens (0 < d <= 1)")
    group.add_argument("--tokens", type=int, help="read a fixed number k of tokens per head")


def budget_from(args: argparse.Namespace) -> Budget:
    if args.density is not None:
        return Budget(density=args.density)
    if args.tokens is not None:
        return Budget(tokens=args.tokens)
    return Budget(sparsity=args.sparsity if args.sparsity is not None else 10)


def read_text(value: str | None, option: str = "text") -> str | None:
    """'@path' reads a file (clear errors naming the option and file); anything else is the text itself."""
    if value is not None and value.startswith("@"):
        return read_user_text(value[1:], f"{option} @file", "a UTF-8 text file")
    return value

"""`ctxsparse theorem`: check Theorem 1 (dense attention is not injective for N > d + 1) numerically."""

from __future__ import annotations

import argparse

import torch

from ctxsparse import theory

HEADLINE = "Theorem 1: for N > d + 1, o = V^T a cannot tell every two attention distributions apart."


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "theorem",
        help="check Theorem 1 (dense attention over N > d + 1 tokens is not injective)",
        description=(
            "Builds two different attention distributions with the same output V^T a, by moving a base "
            "distribution along the null space of [V^T; 1^T] to the simplex boundary: on a random V, and "
            "with --model on the real value cache of every layer and kv head."
        ),
    )
    p.add_argument("--n", type=int, default=128, help="tokens N of the random V (default 128)")
    p.add_argument("--d", type=int, default=64, help="head dimension d of the random V (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed for V, the base distribution and the direction")
    p.add_argument(
        "--step",
        type=float,
        default=1.0,
        help="fraction of the largest feasible step in (0, 1]; 1 reaches the boundary and drops a token",
    )
    p.add_argument("--model", default=None, help="also measure a model's value caches, e.g. smollm2-135m")
    p.add_argument("--tokens", type=int, default=1024, help="context length for --model (default 1024)")
    p.add_argument("--device", default="cpu", help="device for --model (default cpu)")
    p.set_defaults(run=run)


def check_args(args: argparse.Namespace) -> None:
    """Refuse sizes the construction cannot use, naming the flag and a valid value."""
    if args.d < 1:
        raise ValueError(f"--d (head dimension) must be a positive whole number such as 64; got {args.d}.")
    if args.n < 2:
        raise ValueError(f"--n (tokens) must be at least 2 (and > d + 1 = {args.d + 1} for a collision); got {args.n}.")
    if not 0 < args.step <= 1:
        raise ValueError(f"--step must lie in (0, 1]; got {args.step}.")
    if args.model and args.tokens < 2:
        raise ValueError(f"--tokens must be at least 2 with --model; got {args.tokens}.")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    print(HEADLINE)
    gen = torch.Generator().manual_seed(args.seed)
    values = torch.randn(args.n, args.d, generator=gen, dtype=torch.float64)
    c = theory.collision(values, seed=args.seed, step=args.step)
    check = theory.verify(c)
    print(theory.format_collision(c, check, title=f"random V (seed {args.seed})"))
    ok = check.passed
    if args.model:
        try:
            from ctxsparse.models import load_model
        except ImportError as err:
            raise RuntimeError(f"Model loading is unavailable in this install ({err}).") from err
        model, tokenizer = load_model(args.model, device=args.device)
        records = theory.measure_model(model, tokenizer, tokens=args.tokens, seed=args.seed)
        print(f"\n{args.model}: value caches after a dense pass over {records[0].n if records else 0} tokens")
        print(theory.format_model_table(records))
        print(theory.model_summary(records))
        ok = ok and all(r.passed is not False for r in records)
    return 0 if ok else 1

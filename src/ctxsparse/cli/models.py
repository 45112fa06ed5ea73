"""`ctxsparse models`: what load_model() accepts."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models that can be loaded", description="List loadable models.")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ctxsparse.models import MODEL_ALIASES, embedded_gguf_path

    try:
        embedded = f"installed ({embedded_gguf_path().name})"
    except FileNotFoundError as err:
        embedded = str(err)
    width = max(map(len, MODEL_ALIASES))
    for name, about in MODEL_ALIASES.items():
        print(f"{name:<{width}}  {about}")
    print(f"{'<org/name>':<{width}}  any transformers causal LM on the hub (needs a network or a cached copy)")
    print(f"{'<path>':<{width}}  a local directory holding a transformers model")
    print(f"\nembedded model: {embedded}")
    return 0

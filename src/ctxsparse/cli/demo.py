"""`ctxsparse demo`: the main job on the embedded model — a passkey prompt, dense and sparse side by side."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="passkey retrieval on the embedded model, dense vs oracle top-k at 10x and 50x",
        description="Prefill a ~2K-token passkey prompt once, then answer it densely and under OracleTopK at "
        "10x and 50x sparsity, printing the answers and fidelity side by side.",
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--length", type=int, default=2048, help="context length in tokens")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ctxsparse.budget import Budget
    from ctxsparse.generation import decode, prefill
    from ctxsparse.models import load_model
    from ctxsparse.passkey import passkey_prompt

    model, tokenizer = load_model(args.model)
    prompt = passkey_prompt(tokenizer, args.length)
    pre = prefill(model, tokenizer, prompt.context)
    print(f"passkey prompt: {pre.num_tokens} context tokens, answer {prompt.answer}")
    header = f"{'method':<14}{'sparsity':>9}  {'answer':<12}{'ok':>4}{'density':>9}{'recall':>8}{'KL':>8}{'top-1':>7}"
    print(header)
    for method, sparsity in (("dense", 1), ("oracle_topk", 10), ("oracle_topk", 50)):
        res = decode(pre, prompt.question, method, Budget(sparsity=sparsity), 12, answer_prefix=prompt.answer_prefix)
        s = res.trace.summary()
        cell = lambda v: "-" if v is None else f"{v:.3f}"
        ok = "yes" if prompt.answer in res.text else "no"
        print(
            f"{method:<14}{sparsity:>8}x  {res.text[:12]:<12}{ok:>4}{cell(s['density']):>9}"
            f"{cell(s['mass_recall']):>8}{cell(s['kl']):>8}{cell(s['top1_agreement']):>7}"
        )
    return 0

"""`ctxsparse generate`: one answer under a sparse method, with its fidelity summary."""

from __future__ import annotations

import argparse

from ctxsparse.cli.common import add_budget_options, add_model_options, budget_from, read_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="prefill a context densely, decode the question and answer sparsely",
        description="Prefill the context densely, then decode the question and the answer under a sparse method. "
        "Texts starting with @ are read from that file.",
    )
    p.add_argument("prompt", nargs="?", help="a prompt (all of it prefilled densely; only the answer is sparse)")
    p.add_argument("--context", help="the long part, prefilled densely (or @file)")
    p.add_argument("--question", help="the short part, decoded sparsely (or @file)")
    p.add_argument("--answer-prefix", default="", help="text the answer starts with")
    p.add_argument("--method", default="oracle_topk", help="selector spec, e.g. oracle_topk or sink_window:sink=4")
    add_budget_options(p)
    add_model_options(p)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--phase", choices=("question", "decode"), default="question")
    p.add_argument("--no-chat", action="store_true", help="do not wrap the prompt in the chat template")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ctxsparse.generation import generate
    from ctxsparse.models import load_model
    from ctxsparse.selectors import make_selector

    context, question = read_text(args.context), read_text(args.question)
    if args.prompt is not None and (context is not None or question is not None):
        raise ValueError("Give either a prompt or --context/--question, not both.")
    if args.prompt is not None:
        context, question = args.prompt, ""
    if not context:
        raise ValueError("Nothing to generate from: give a prompt or --context (and --question).")
    selector = make_selector(args.method)
    budget = budget_from(args)
    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    result = generate(
        model,
        tokenizer,
        context=context,
        question=question or "",
        selector=selector,
        budget=budget,
        max_new_tokens=args.max_new_tokens,
        phase=args.phase,
        chat=not args.no_chat,
        answer_prefix=args.answer_prefix,
    )
    print(result.text)
    print(
        f"[{args.method} at {budget.label()}; {result.prompt_tokens} prompt tokens, {len(result.token_ids)} new; "
        f"prefill {result.prefill_s:.2f}s, decode {result.decode_s:.2f}s] {result.trace.format()}"
    )
    return 0

"""`ctxsparse generate`: one answer under a sparse method, with its fidelity summary."""

from __future__ import annotations

import argparse
import sys

from ctxsparse.cli.common import add_budget_options, add_model_options, budget_from, read_text
from ctxsparse.tasks.truncation import TRUNCATE_HELP, TRUNCATE_RULES

#: Room left for the chat template's tokens around the context and question.
TEMPLATE_ALLOWANCE = 64


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
    p.add_argument("--truncate", choices=TRUNCATE_RULES, default="none", help=TRUNCATE_HELP)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ctxsparse.generation import generate
    from ctxsparse.models import check_device, load_model, max_positions
    from ctxsparse.selectors import make_selector
    from ctxsparse.tasks.truncation import fit_text

    check_device(args.device)
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1; got {args.max_new_tokens}.")
    context, question = read_text(args.context, "--context"), read_text(args.question, "--question")
    if args.prompt is not None and (context is not None or question is not None):
        raise ValueError("Give either a prompt or --context/--question, not both.")
    if args.prompt is not None:
        context, question = args.prompt, ""
    if not context:
        raise ValueError("Nothing to generate from: give a prompt or --context (and --question).")
    selector = make_selector(args.method)
    budget = budget_from(args)
    positions = max_positions(args.model)
    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    positions = positions or getattr(model.config, "max_position_embeddings", None)
    if positions:
        limit = positions - args.max_new_tokens - TEMPLATE_ALLOWANCE
        if limit < 1:
            raise ValueError(
                f"--max-new-tokens {args.max_new_tokens} leaves no room in {args.model}'s {positions} positions."
            )
        where = "the prompt" if args.prompt is not None else "--context with --question"
        context, tokens, dropped = fit_text(context, question or "", tokenizer, limit, args.truncate, where)
        if dropped:
            print(f"note: --truncate {args.truncate} dropped {dropped} tokens of the context to fit {limit} tokens.")
        print(
            f"prefilling the context, then decoding ({tokens} tokens of text; up to {args.max_new_tokens} new) ...",
            file=sys.stderr,
            flush=True,
        )
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

"""`ctxsparse replay`: teacher-force a real chat transcript; per assistant turn, KL and agreement sparse vs dense."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ctxsparse.cli.common import add_budget_options, add_model_options, budget_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a chat transcript teacher-forced: per-turn KL and token agreement, sparse vs dense",
        description="Render a transcript (a JSON list of OpenAI-style messages, tool calls allowed) with the "
        "model's chat template, prefill everything before the first assistant token densely, run the rest "
        "sparse and dense on the same tokens, and report KL(dense || sparse) and top-1 agreement per assistant "
        "turn. The logits at position p predict token p+1; a turn is scored on the predictions of its own "
        "tokens (content and end-of-turn marker) made at sparse positions.",
    )
    p.add_argument(
        "transcript",
        help="JSON file: a list of {role, content[, tool_calls]} messages, a mini-swe-agent trajectory (*.traj.json) "
        "or a SWE-agent .traj file",
    )
    p.add_argument("--method", default="oracle_topk", help="selector spec (default oracle_topk)")
    add_budget_options(p)
    p.add_argument("--sparsities", help="comma-separated sparsity levels to replay at each (e.g. 10,50,100)")
    add_model_options(p)
    p.add_argument("--json", dest="json_out", help="also write the per-turn results to this JSON file")
    p.set_defaults(run=run)


def _cell(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def run(args: argparse.Namespace) -> int:
    from ctxsparse.budget import Budget
    from ctxsparse.models import check_device, load_model
    from ctxsparse.selectors import make_selector
    from ctxsparse.study.plan import parse_numbers
    from ctxsparse.study.replay import load_transcript, replay
    from ctxsparse.study.report_tables import text_table
    from ctxsparse.user_files import check_output_file

    check_device(args.device)
    if args.json_out:
        check_output_file(args.json_out, "--json")
    messages = load_transcript(args.transcript)
    make_selector(args.method)
    budgets = [Budget(sparsity=s) for s in parse_numbers(args.sparsities)] if args.sparsities else [budget_from(args)]
    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    results = []
    for budget in budgets:
        result = replay(model, tokenizer, messages, args.method, budget)
        results.append(result)
        rows = [
            [
                str(t.message),
                str(t.start),
                f"{t.start}-{t.end}",
                str(t.scored),
                _cell(t.kl_mean),
                _cell(t.kl_max),
                _cell(t.agreement, 3),
            ]
            for t in result.turns
        ]
        total = sum(t.scored for t in result.turns)
        span = f"{result.sparse_from}-{result.tokens}"
        rows.append(["all", "", span, str(total), _cell(result.kl_mean), "", _cell(result.agreement, 3)])
        print(
            f"{result.model}, {result.method} at {result.budget}: {result.tokens} tokens, sparse from token "
            f"{result.sparse_from}; rendering: {result.rendering}"
        )
        header = ["message", "context", "tokens", "scored", "KL mean", "KL max", "top-1 agree"]
        print(text_table(header, rows))
    if args.json_out:
        payload = results[0].as_dict() if len(results) == 1 else [r.as_dict() for r in results]
        Path(args.json_out).write_text(json.dumps(payload, indent=2), encoding="utf-8")
        print(f"json: {args.json_out}")
    return 0

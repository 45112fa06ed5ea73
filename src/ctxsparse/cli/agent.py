"""`ctxsparse agent`: mini-swe-agent episodes on coding tasks under sparse decoding, into a resumable database."""

from __future__ import annotations

import argparse

ENVS = ("local", "swebench")

EPILOG = """examples:
  ctxsparse agent --model smollm2-135m --env local --tasks all --methods "dense;oracle_topk" \\
      --sparsity 1,10,50 --max-turns 50 --db agent.db
  ctxsparse agent --env local --tasks page_count,csv_quoting --max-turns 3 --max-new-tokens 128 --db try.db
  ctxsparse agent --env swebench --instances sympy__sympy-20590 --methods "dense;oracle_topk" --db swe.db
  ctxsparse report agent.db --out agent-report/

Each finished episode is committed to --db at once; rerunning the same command skips stored episodes (a killed
run loses only the episode in flight). Local commands run in a sandbox inside a throw-away copy of the task
repository; the isolation level reached is stored with every episode."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agent",
        help="run mini-swe-agent episodes on coding tasks with sparse decoding (KV cache kept across turns)",
        description="Run mini-swe-agent's DefaultAgent with a local model that keeps its KV cache across turns, "
        "prefills only the new tokens densely and decodes each reply sparsely; commands run sandboxed; an episode "
        "is resolved when the task's hidden tests pass with its diff applied to a fresh copy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="smollm2-135m", help="built-in name, random:<shape>, hub id or local path")
    p.add_argument("--env", default="local", help=f"where episodes run: {', '.join(ENVS)} (default local)")
    p.add_argument("--tasks", default="all", help="'all', comma-separated shipped task names, or task folders")
    p.add_argument("--instances", default="", help="--env swebench: comma-separated SWE-bench instance ids")
    p.add_argument("--subset", default="lite", help="--env swebench: SWE-bench subset (default lite)")
    p.add_argument("--split", default="dev", help="--env swebench: dataset split (default dev)")
    p.add_argument("--methods", action="append", help="selector specs separated by ';' (default 'dense;oracle_topk')")
    p.add_argument("--sparsity", default="1,10,50", help="comma-separated sparsity levels N/k (default 1,10,50)")
    p.add_argument("--max-turns", type=int, default=50, help="model calls per episode at most (default 50)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="tokens per reply at most (default 512)")
    p.add_argument("--phase", choices=("question", "decode"), default="question", help="what runs sparse")
    p.add_argument("--command-timeout", type=float, default=30.0, help="wall-clock seconds per command (default 30)")
    p.add_argument("--output-bytes", type=int, default=10_000, help="command output shown to the model (bytes)")
    p.add_argument("--trajectories", help="folder to save each episode's mini-swe-agent trajectory (for replay)")
    p.add_argument("--no-trace", action="store_true", help="skip per-turn fidelity (mass recall, KL, agreement)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16, float16 or auto")
    p.add_argument("--db", required=True, help="SQLite database for the episodes (created or resumed)")
    p.set_defaults(run=run)


def _validate(args: argparse.Namespace):
    """Everything checked before a model is loaded: (tasks, cells, limits)."""
    from ctxsparse.agent.coding_task import load_tasks
    from ctxsparse.agent.runner import grid
    from ctxsparse.agent.sandbox import Limits
    from ctxsparse.selectors import make_selector
    from ctxsparse.study.plan import MethodSpec, parse_numbers, split_methods

    if args.env not in ENVS:
        raise ValueError(f"Unknown environment {args.env!r}. Known environments: {', '.join(ENVS)}.")
    if args.max_turns < 1:
        raise ValueError(f"--max-turns must be >= 1; got {args.max_turns}.")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1; got {args.max_new_tokens}.")
    methods = [MethodSpec.parse(m).spec for m in split_methods(args.methods or ["dense;oracle_topk"])]
    for m in methods:
        make_selector(m)
    cells = grid(methods, parse_numbers(args.sparsity))
    limits = Limits(wall_s=args.command_timeout, output_bytes=args.output_bytes)
    tasks = load_tasks(args.tasks) if args.env == "local" else []
    return tasks, cells, limits


def run(args: argparse.Namespace) -> int:
    from ctxsparse.agent.episode import require_mini_swe_agent

    tasks, cells, limits = _validate(args)
    require_mini_swe_agent()
    if args.env == "swebench":
        from ctxsparse.agent.swebench import check_swebench_requirements, run_swebench
        from ctxsparse.models import load_model

        instances = [i.strip() for i in args.instances.split(",") if i.strip()]
        if not instances:
            raise ValueError("--env swebench needs --instances: comma-separated SWE-bench instance ids.")
        check_swebench_requirements()
        counts = run_swebench(
            args.model,
            load_model(args.model, args.device, args.dtype),
            instances,
            cells,
            args.db,
            subset=args.subset,
            split=args.split,
            max_turns=args.max_turns,
            max_new_tokens=args.max_new_tokens,
            phase=args.phase,
        )
        print(f"{counts['ran']} episodes run, {counts['resolved']} resolved; database: {args.db}")
        return 0
    from ctxsparse.agent.runner import AgentPlan, run_plan

    plan = AgentPlan(
        model=args.model,
        tasks=tasks,
        cells=cells,
        max_turns=args.max_turns,
        max_new_tokens=args.max_new_tokens,
        phase=args.phase,
        device=args.device,
        dtype=args.dtype,
        limits=limits,
        trace=not args.no_trace,
        trajectory_dir=args.trajectories,
    )
    counts = run_plan(plan, args.db)
    print(f"{counts['ran']} episodes run ({counts['total']} in the plan), {counts['resolved']} resolved; db: {args.db}")
    return 0

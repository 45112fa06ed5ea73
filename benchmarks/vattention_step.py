"""vAttention in the study's decode loop: its GPU pipeline against the batched select it replaced, per batch.

What one study batch does per configuration: 100 rows of a shared cache, each holding a ~4K-token context,
are fed a question (one token per step) and decode an answer, all through `engine.forced.run_forced`.
Timed here for vAttention on its pipeline (CUDA graph) and on the engine's reference path with one select()
per layer over all rows (the question as one block, then fixed-shape steps in a CUDA graph: the path the
study took before), with dense and the oracle's per-group pipeline for scale. Random weights in the embedded
model's shape (random:smollm2-135m); contexts and questions are random tokens, and no row stops early.
Each configuration runs --repeats times; the first run compiles kernels and captures graphs, the median of the
later runs is reported (wall time of the whole batch, synchronised; per forward call = wall / calls).

    python benchmarks/vattention_step.py [--batch 100] [--context 4000] [--question 30] [--answer 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from ctxsparse import Budget, OracleTopK, VAttention
from ctxsparse.bench.generate_floor import step_bytes, weight_read_bytes
from ctxsparse.bench.peaks import datasheet_peak
from ctxsparse.engine import Engine
from ctxsparse.engine.forced import run_forced
from ctxsparse.engine.grad_mode import engine_mode
from ctxsparse.engine.hook import attached
from ctxsparse.models import load_model
from ctxsparse.versions import versions

RESULTS = Path(__file__).parent / "results"


def _configs(sparsities: list[int]):
    """(label, selector, budget, reference path?) per configuration."""
    out = [("dense", None, None, False)]
    for s in sparsities:
        out.append((f"oracle_topk kv_head {s}x", OracleTopK(granularity="kv_head", aggregate="logit_max"),
                    Budget(sparsity=s), False))  # fmt: skip
        out.append((f"vattention {s}x (pipeline)", VAttention(), Budget(sparsity=s), False))
        out.append((f"vattention {s}x (batched select)", VAttention(), Budget(sparsity=s), True))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="random:smollm2-135m")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--context", type=int, default=4000)
    p.add_argument("--question", type=int, default=30)
    p.add_argument("--answer", type=int, default=32)
    p.add_argument("--sparsity", default="10,20,50")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda", help="cuda; cpu (with TRITON_INTERPRET=1) only checks the script")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/vattention-step-<date>.json)")
    args = p.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("vattention_step.py times CUDA graphs: run it on a CUDA GPU (or --device cpu to check it).")
    model, _ = load_model(args.model, device=args.device, dtype="bfloat16")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    contexts = [torch.randint(5, vocab - 5, (args.context,), generator=gen).tolist() for _ in range(args.batch)]
    feeds = [torch.randint(5, vocab - 5, (args.question,), generator=gen).tolist() for _ in range(args.batch)]
    max_len = args.context + args.question + args.answer + 8
    graphs = "auto" if cuda else False
    dense = Engine(model, None, max_batch=args.batch, max_len=max_len, prefill_chunk=8192, graphs=graphs)
    with engine_mode(), attached(model, dense._dispatch):
        for b, ctx in enumerate(contexts):
            dense._forward_rows([b], [0], [ctx], sparse=False)
    lengths = [args.context] * args.batch
    peak = datasheet_peak(torch.cuda.get_device_name()) if cuda else None
    weights, group = weight_read_bytes(model), model.config.num_attention_heads // model.config.num_key_value_heads
    rows = []
    for label, selector, budget, reference in _configs([int(s) for s in args.sparsity.split(",")]):
        engine = dense if selector is None else Engine(model, None, selector=selector, budget=budget,
                                                       max_batch=args.batch, max_len=max_len, cache=dense.cache,
                                                       graphs=graphs)  # fmt: skip
        if reference:
            engine.mode = "rows"  # the engine's reference path: one select() per layer over all rows
        times, mode, calls = [], "", 0
        for _ in range(args.repeats):
            sync()
            start = time.perf_counter()
            run = run_forced(engine, lengths, feeds, [args.answer] * args.batch, ())
            sync()
            times.append(time.perf_counter() - start)
            mode, calls = run.mode, run.calls
        if engine is not dense:
            engine.close()
        wall = statistics.median(times[1:]) if len(times) > 1 else times[0]
        row = {"config": label, "mode": mode, "batch_s": round(wall, 4), "first_s": round(times[0], 4),
               "calls": calls, "ms_per_call": round(1e3 * wall / calls, 3)}  # fmt: skip
        method = "dense" if selector is None else ("oracle_topk" if label.startswith("oracle") else "vattention")
        k = 0 if budget is None else budget.tokens_for(args.context)
        floor = step_bytes(method, dense.cache.shape, weights, args.batch, args.context, k, group)
        row["floor_bytes_per_step"] = floor.total  # at the context's length, one token per row
        if peak is not None:
            row["floor_ms_per_step"] = round(floor.floor_ms(peak[0]), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    device = torch.cuda.get_device_name() if cuda else "cpu (interpreted kernels: a check, not a timing)"
    print(f"\n{device}, bf16, {args.model}, {args.batch} rows x {args.context} context tokens, question "
          f"{args.question} + answer {args.answer} tokens; median of {args.repeats - 1} warm runs")  # fmt: skip
    where = f"{peak[1]} datasheet {peak[0]} TB/s" if peak else "no datasheet peak for this device"
    print(f"byte floor per step: weights + keys scanned + rows read, at {args.context} tokens ({where})")
    print(f"{'configuration':40s} {'mode':42s} {'batch s':>8s} {'ms/call':>8s} {'floor ms':>9s}")
    for r in rows:
        floor_ms = r.get("floor_ms_per_step", float("nan"))
        print(f"{r['config']:40s} {r['mode'][:42]:42s} {r['batch_s']:8.3f} {r['ms_per_call']:8.2f} {floor_ms:9.3f}")
    out = Path(args.out) if args.out else RESULTS / f"vattention-step-{datetime.now(timezone.utc):%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    record = {"device": device, "command": "python benchmarks/vattention_step.py", "args": settings, "rows": rows,
              "versions": versions(), "at": datetime.now(timezone.utc).isoformat()}  # fmt: skip
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Where the graphed time of a sparse decode goes at the S=50 target points: split kernel, merge, PDL, splits.

For B=1 and B=8 at N=128K, S=50 (the layout of `bench decode`: token-major paged cache seen as [B, Hkv, N, D]
views, bf16, Hq/Hkv/D = 32/8/128), cold-L2 CUDA-graph replays of: the planned call; the split kernel
alone (its merge dropped: timing only, the output is not the attention); the plan without PDL; and plans
capped at a few split counts. A decomposition for choosing the next kernel change, not a benchmark of
record. Usage (a CUDA GPU; about 30 s): PYTHONPATH=src python benchmarks/sweep_decode_latency.py [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import torch

from ctxsparse.attention.split_plan import default_config
from ctxsparse.attention.triton_decode import plan_decode
from ctxsparse.bench.decode import PAGE_SIZE, DecodeShape, random_selection
from ctxsparse.bench.timing import L2Flusher, cold_l2_time

POINTS = (DecodeShape(1, 131072, 50), DecodeShape(8, 131072, 50))
SPLIT_CAPS = (8, 16, 32)


def _inputs(shape: DecodeShape, gen: torch.Generator):
    b, n, h, d = shape.batch, shape.context, shape.kv_heads, shape.head_dim
    pages = b * math.ceil(n / PAGE_SIZE)
    k_pages = torch.randn(pages, PAGE_SIZE, h, d, device="cuda", generator=gen, dtype=torch.bfloat16)
    v_pages = torch.randn(pages, PAGE_SIZE, h, d, device="cuda", generator=gen, dtype=torch.bfloat16)
    k_view = k_pages.view(b, -1, h, d)[:, :n].transpose(1, 2)
    v_view = v_pages.view(b, -1, h, d)[:, :n].transpose(1, 2)
    q = torch.randn(b, shape.q_heads, d, device="cuda", generator=gen, dtype=torch.bfloat16)
    return q, k_view, v_view, random_selection(shape, "cuda", gen)


def _variants(args: tuple, head_dim: int):
    """(name, plan) pairs: the default plan, its split kernel alone, no PDL, and capped split counts."""
    q, k, v, idx = args
    base = default_config(head_dim)
    plan = lambda config: plan_decode(q, k, v, idx, None, None, head_dim**-0.5, None, False, config)  # noqa: E731
    planned = plan(base)
    yield "planned", planned
    if planned.direct is not None and planned.splits > 1:
        alone = dataclasses.replace(planned, direct=(planned.direct[0], None))
        yield "split kernel alone", alone
    yield "no PDL", plan(dataclasses.replace(base, pdl=False))
    for cap in SPLIT_CAPS:
        yield f"splits <= {cap}", plan(dataclasses.replace(base, max_splits=cap))


def _time_point(shape: DecodeShape, flusher: L2Flusher, gen: torch.Generator, iters: int) -> list[dict]:
    """Time every variant at one point (a failing variant is reported and skipped) and print its line."""
    inputs = _inputs(shape, gen)
    out = torch.empty_like(inputs[0])
    point, rows = f"{shape.batch:>3} {shape.context:>7} {shape.sparsity:>4}", []
    for name, plan in _variants(inputs, shape.head_dim):
        try:
            t = cold_l2_time(lambda p=plan: p(*inputs, None, None, None, out), flusher, iters)
        except Exception as err:  # one variant failing must not lose the others
            print(f"{point} {name:>20} failed: {type(err).__name__}: {err}")
            continue
        where = {"batch": shape.batch, "context": shape.context, "sparsity": shape.sparsity, "variant": name}
        rows.append(where | {"splits": plan.splits, "chunk": plan.chunk, "launch": plan.launch_mode, **t.as_dict()})
        times = f"{t.median_us:>7.1f} {t.p10_us:>7.1f} {t.p90_us:>7.1f}"
        print(f"{point} {name:>20} {plan.splits:>6} {plan.chunk:>6} {times} {t.graphed}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("sweep_decode_latency needs a CUDA GPU.")
        return 2
    flusher, gen, rows = L2Flusher("cuda", "read"), torch.Generator(device="cuda").manual_seed(0), []
    print(
        f"{'B':>3} {'N':>7} {'S':>4} {'variant':>20} {'splits':>6} {'chunk':>6} {'us':>7} {'p10':>7} {'p90':>7} graphed"
    )
    for shape in POINTS:
        rows += _time_point(shape, flusher, gen, args.iters)
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Sweep the Triton sparse decode kernel's launch configuration on a few benchmark points (CUDA only).

For each point: cold-L2 median of every DecodeConfig in the grid below, achieved TB/s over the selected
K/V + index bytes, and the best configuration; last, the configuration with the best geometric-mean
time over all points. Usage: PYTHONPATH=src python benchmarks/sweep_decode.py [--mode full|focus|default]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import math
import sys

import torch

import ctxsparse.attention.triton_decode as kernel_module
from ctxsparse.attention.triton_decode import DecodeConfig, _split_kernel, default_config, triton_sparse_decode
from ctxsparse.bench.decode import PAGE_SIZE, DecodeShape, random_selection, tbps
from ctxsparse.bench.timing import L2Flusher, cold_l2_time

POINTS = [
    DecodeShape(1, 131072, 50),
    DecodeShape(1, 32768, 100),
    DecodeShape(8, 131072, 10),
    DecodeShape(8, 131072, 50),
    DecodeShape(8, 131072, 100),
    DecodeShape(32, 131072, 20),
]


def configs(mode: str) -> list[DecodeConfig]:
    """'full': the whole grid; 'focus': the default and its neighbours; 'default': the default alone."""
    base = default_config(128)
    if mode == "default":
        return [base]
    if mode == "focus":  # the split count follows the kernel's occupancy, so vary the tile and pipeline
        near = [dataclasses.replace(base, block_n=bn, num_stages=st) for bn in (16, 32, 64) for st in (2, 3)]
        return near + [dataclasses.replace(base, block_n=128, num_stages=2), dataclasses.replace(base, pdl=False)]
    grid = itertools.product((32, 64, 128), (4, 8), (2, 3), (4, 8, 16, 32))
    cfgs = [DecodeConfig(block_n=bn, num_warps=w, num_stages=st, programs_per_sm=p, pdl=False) for bn, w, st, p in grid]
    # programmatic dependent launch of the merge, on the smaller tiles that suit few-row shapes
    return cfgs + [dataclasses.replace(c, pdl=True) for c in cfgs if c.block_n <= 64 and c.num_warps == 4]


def report_resources() -> None:
    """Registers, spills and shared memory of each compiled split-kernel variant (occupancy inputs)."""
    for cache in getattr(_split_kernel, "device_caches", {}).values():
        for compiled in cache[0].values():
            meta = compiled.metadata
            print(
                f"  split kernel num_warps={meta.num_warps} num_stages={meta.num_stages}: "
                f"{getattr(compiled, 'n_regs', '?')} registers, {getattr(compiled, 'n_spills', '?')} spills, "
                f"{meta.shared} B shared"
            )


def time_point(s: DecodeShape, cfgs, flusher, gen, iters: int) -> list[dict]:
    """Cold-L2 median and error (against the default configuration) of each configuration at one point."""
    b, n, h, d = s.batch, s.context, s.kv_heads, s.head_dim
    pages = b * math.ceil(n / PAGE_SIZE)
    k_pages = torch.randn(pages, PAGE_SIZE, h, d, device="cuda", generator=gen, dtype=torch.bfloat16)
    v_pages = torch.randn_like(k_pages)
    k_view = k_pages.view(b, -1, h, d)[:, :n].transpose(1, 2)
    v_view = v_pages.view(b, -1, h, d)[:, :n].transpose(1, 2)
    q = torch.randn(b, s.q_heads, d, device="cuda", generator=gen, dtype=torch.bfloat16)
    idx = random_selection(s, "cuda", gen)
    run = functools.partial(triton_sparse_decode, q, k_view, v_view, idx, None, None, d**-0.5, None, False)
    ref = run().float()
    records = []
    for c in cfgs:
        call = functools.partial(run, c)
        try:
            err = float((call().float() - ref).norm() / ref.norm())
            us = cold_l2_time(call, flusher, iters).median_us
        except Exception as exc:  # a configuration that does not compile or launch is reported, not fatal
            print(f"  !! {c}: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            err, us = float("nan"), float("inf")
        records.append({"point": [b, n, s.sparsity], "config": c, "us": us, "rel_err": err})
        if err > 2e-2:
            print(f"  !! B={b} N={n} S={s.sparsity} {c}: rel err {err:.2e}", flush=True)
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("full", "focus", "default"), default="full")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json", default=None, help="write all timings here")
    args = parser.parse_args()
    flusher = L2Flusher("cuda", "read")
    gen = torch.Generator(device="cuda").manual_seed(0)
    cfgs = configs(args.mode)
    times: dict[DecodeConfig, list[float]] = {c: [] for c in cfgs}
    records = []
    for s in POINTS:
        point = time_point(s, cfgs, flusher, gen, args.iters)
        torch.cuda.empty_cache()
        for r in point:
            times[r["config"]].append(r["us"])
        best = min(point, key=lambda r: r["us"])
        label = f"B={s.batch:2d} N={s.context:6d} S={s.sparsity:3d}"
        print(f"{label}: best    {best['us']:8.1f} us {tbps(s.sparse_bytes, best['us']):.2f} TB/s  {best['config']}")
        default = [r for r in point if r["config"] == default_config(128)]
        if default:
            us = default[0]["us"]
            print(f"{'':22s}default {us:8.1f} us {tbps(s.sparse_bytes, us):.2f} TB/s", flush=True)
        records += [r | {"config": r["config"].__dict__} for r in point]
    geo = {c: math.exp(sum(map(math.log, t)) / len(t)) for c, t in times.items()}
    print("best by geometric mean over points (us per point):")
    for c in sorted(geo, key=geo.get)[:8]:
        print(f"  {geo[c]:8.2f}  {' '.join(f'{t:7.1f}' for t in times[c])}  {c}")
    print("each point's best:")
    for i, s in enumerate(POINTS):
        c = min(times, key=lambda c: times[c][i])
        print(f"  B={s.batch:2d} N={s.context:6d} S={s.sparsity:3d} {times[c][i]:8.1f} us  {c}")
    report_resources()
    print("programs resident per SM, per compiled variant:", sorted(set(map(str, kernel_module._RESIDENT.values()))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

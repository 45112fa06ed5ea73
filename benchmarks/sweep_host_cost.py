"""Host time of an eager sparse_decode call: where it goes and what it costs per shape.

On CUDA: host µs per call of back-to-back eager calls (the GPU's launch queue absorbs the kernels) in each
launch mode of CTXSPARSE_TRITON_LAUNCH: direct (the compiled kernels' C launchers bound at plan time, the
default), runner (Triton's CompiledKernel[grid] per launch) and jit (Triton's JIT entry, as before plans);
`direct_used` says whether the direct binding held (else the plan launched through the runner).
Without CUDA: the Triton interpreter's plans with no-op direct launchers (stream 0), so only the library's
own Python work on the direct path is timed. --profile prints the functions that take the host time.
Usage: PYTHONPATH=src python benchmarks/sweep_host_cost.py [--profile] [--json PATH]   (about 30 s on a GPU)
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import os
import pstats
import sys
import time

import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

from ctxsparse.attention import sparse_decode  # noqa: E402

ENTRY = importlib.import_module("ctxsparse.attention.sparse_decode")
LAUNCH = importlib.import_module("ctxsparse.attention.decode_launch")
# (batch, kv heads, context, selected k): the small shapes where the host time shows, and two larger ones
SHAPES = [(1, 8, 32768, 328), (1, 8, 131072, 2622), (8, 8, 131072, 2622), (32, 8, 32768, 656)]


def _case(b: int, hkv: int, n: int, k: int):
    dev = "cuda" if CUDA else "cpu"
    q = torch.randn(b, 4 * hkv, 128, device=dev).bfloat16()
    keys = torch.randn(b, hkv, n if CUDA else 1024, 128, device=dev).bfloat16()
    idx = torch.randint(0, keys.shape[2], (b, hkv, k if CUDA else 64), device=dev, dtype=torch.int32)
    return q, keys, keys, idx


def _stub_launches() -> None:
    """Interpreter only: every plan launches directly through no-op C launchers on stream 0 (the CUDA
    lookups answered in Python), so the timing is the library's host work on the direct path alone."""
    from ctxsparse.attention.triton_launch import DirectLaunch, StreamScratch

    noop = lambda *args: None  # noqa: E731
    LAUNCH._raw_stream, LAUNCH._capturing = (lambda index: 0), (lambda: False)
    torch._C._cuda_getDevice = lambda: -1
    for plan in ENTRY._PLANS.values():
        merge = DirectLaunch(noop, (1, 1, 1), 0, ()) if plan.splits > 1 else None
        plan.direct = (DirectLaunch(noop, (1, 1, 1), 0, ()), merge)
        plan.stream_scratch = StreamScratch(torch.device("cpu"))


def host_us(case, calls: int = 100, repeats: int = 5) -> float:
    """Best-of-repeats mean host µs per eager call (after one call that plans and compiles). Few enough
    calls per repeat that the GPU's launch queue never fills, so a long kernel does not block the host."""
    q, k, v, idx = case
    sparse_decode(q, k, v, idx, backend="triton")
    if not CUDA:
        _stub_launches()
    best = float("inf")
    for _ in range(repeats):
        if CUDA:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            sparse_decode(q, k, v, idx, backend="triton")
        best = min(best, (time.perf_counter() - t0) / calls * 1e6)
    if CUDA:
        torch.cuda.synchronize()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="print where the host time of the first shape goes")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    modes = ["direct", "runner", "jit"] if CUDA else ["stubbed"]
    results = []
    for shape in SHAPES:
        row = {"batch": shape[0], "kv_heads": shape[1], "context": shape[2], "k": shape[3]}
        case = _case(*shape)
        for mode in modes:
            os.environ[LAUNCH.LAUNCH_ENV] = mode if CUDA else "direct"
            ENTRY._PLANS.clear()
            row[f"{mode}_host_us"] = host_us(case)
            if mode == "direct":
                row["direct_used"] = all(p.direct is not None for p in ENTRY._PLANS.values())
        del case
        results.append(row)
        print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    os.environ.pop(LAUNCH.LAUNCH_ENV, None)
    if args.profile:
        ENTRY._PLANS.clear()
        case = _case(*SHAPES[0])
        host_us(case, calls=10, repeats=1)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(2000):
            sparse_decode(*case, backend="triton")
        profile.disable()
        modes_used = sorted({p.launch_mode for p in ENTRY._PLANS.values()})
        print(f"profile of {SHAPES[0]} (batch, kv heads, context, k), launch mode {modes_used}, 2000 calls:")
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(12)
    if args.json:
        device = torch.cuda.get_device_name() if CUDA else "cpu (interpreter, no-op direct launchers)"
        with open(args.json, "w") as f:
            json.dump({"device": device, "rows": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

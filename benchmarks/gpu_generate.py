"""End-to-end sparse decoding on a GPU: per-token latency of a real-shape model, dense vs sparse selectors.

The model's sparse path runs decode steps through the Triton sparse-decode kernel (attention backend
'auto'); this measures what that buys inside generation, where weights and the selector's own work are
part of every step. Random weights (shapes are what matter for speed). Usage on a CUDA host:
  python benchmarks/gpu_generate.py --model random:llama-3.1-8b --batch 8 --context 32768
Prints a table and writes benchmarks/results/gpu-generate-<gpu>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch
from transformers import StaticCache

from ctxsparse import Budget, OracleTopK, SinkWindow
from ctxsparse.hf import sparse_decoding
from ctxsparse.models import load_model
from ctxsparse.versions import versions


def prefill_chunked(model, ids: torch.Tensor, chunk: int, extra: int) -> StaticCache:
    """Dense prefill into a static cache (no per-step copies), in chunks so the mask stays [B, 1, chunk, N]."""
    cache = StaticCache(config=model.config, max_cache_len=ids.shape[1] + extra)
    with torch.inference_mode():
        for start in range(0, ids.shape[1], chunk):
            model(input_ids=ids[:, start : start + chunk], past_key_values=cache, use_cache=True)
    return cache


def time_steps(model, cache: StaticCache, steps: int, batch: int) -> tuple[float, torch.Tensor]:
    """Median ms per decode step (events around each step) and the greedy tokens, teacher-free."""
    tok = torch.full((batch, 1), 11, device="cuda")
    times, produced = [], []
    with torch.inference_mode():
        for _ in range(steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            logits = model(input_ids=tok, past_key_values=cache, use_cache=True).logits[:, -1]
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
            tok = logits.argmax(-1, keepdim=True)
            produced.append(tok)
    times = sorted(times[2:])
    return times[len(times) // 2], torch.cat(produced, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:llama-3.1-8b")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--context", type=int, default=32768)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    model, _ = load_model(args.model, device="cuda", dtype="bfloat16")
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(100, 10000, (args.batch, args.context), device="cuda", generator=gen)
    rows = []
    runs = [("dense", None, None)] + [
        (name, sel, s)
        for s in (10, 50)
        for name, sel in (("oracle_topk/kv_head", OracleTopK(granularity="kv_head")), ("sink_window", SinkWindow(4)))
    ]
    for name, selector, sparsity in runs:
        cache = prefill_chunked(model, ids, args.chunk, args.steps)
        if selector is None:
            ms, _ = time_steps(model, cache, args.steps, args.batch)
        else:
            with sparse_decoding(model, selector, Budget(sparsity=sparsity), phase="question", trace=False):
                ms, _ = time_steps(model, cache, args.steps, args.batch)
        rows.append({"method": name, "sparsity": sparsity or 1, "ms_per_step": ms})
        del cache
        torch.cuda.empty_cache()
    dense_ms = rows[0]["ms_per_step"]
    gpu = torch.cuda.get_device_name()
    print(f"{args.model}, bf16, batch {args.batch}, context {args.context}, {gpu}")
    print(f"{'method':<22}{'S':>5}{'ms/step':>10}{'vs dense':>10}")
    for r in rows:
        r["speedup_vs_dense"] = dense_ms / r["ms_per_step"]
        print(f"{r['method']:<22}{r['sparsity']:>5}{r['ms_per_step']:>10.2f}{r['speedup_vs_dense']:>10.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = gpu.replace("NVIDIA ", "").split()[0]
    path = out / f"gpu-generate-{tag}-{datetime.date.today().isoformat()}.json"
    record = {
        "benchmark": "gpu_generate",
        "model": args.model,
        "batch": args.batch,
        "context": args.context,
        "gpu": gpu,
        "versions": versions(),
        "rows": rows,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

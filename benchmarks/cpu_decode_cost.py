"""Per-token decode cost of OracleTopK vs dense on the embedded model at ~4K context, on the CPU.

The oracle needs the full q·K, so its cost over dense is the selection (top-k) and the gather; this
script measures it. Usage: python benchmarks/cpu_decode_cost.py [--length 4096] [--steps 32] [--rounds 3]
Prints a table and writes benchmarks/results/cpu-decode-<date>.json.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from ctxsparse import Budget
from ctxsparse.generation import prefill
from ctxsparse.hf import sparse_decoding
from ctxsparse.models import load_model
from ctxsparse.passkey import passkey_prompt
from ctxsparse.versions import versions


def step_times(model, cache, tokens: list[int]) -> list[float]:
    """Seconds of each single-token forward step, teacher forced over `tokens`."""
    times = []
    with torch.inference_mode():
        for tok in tokens:
            start = time.perf_counter()
            model(input_ids=torch.tensor([[tok]]), past_key_values=cache, use_cache=True)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sparsity", default="10,50")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    model, tokenizer = load_model(args.model)
    prompt = passkey_prompt(tokenizer, args.length)
    pre = prefill(model, tokenizer, prompt.context)
    tokens = tokenizer(" " + prompt.question + " " + prompt.answer_prefix * 3, add_special_tokens=False)["input_ids"]
    tokens = (tokens * (args.steps // max(len(tokens), 1) + 1))[: args.steps]
    modes = [("dense", None)] + [("oracle_topk", float(s)) for s in args.sparsity.split(",")]
    per_mode: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, sparsity in modes:
            cache = copy.deepcopy(pre.cache)
            label = name if sparsity is None else f"{name}@{sparsity:g}x"
            if sparsity is None:
                times = step_times(model, cache, tokens)
            else:
                with sparse_decoding(model, name, Budget(sparsity=sparsity), trace=False):
                    times = step_times(model, cache, tokens)
            per_mode.setdefault(label, []).extend(times[2:])  # the first steps warm caches
    dense_ms = statistics.median(per_mode["dense"]) * 1e3
    rows = []
    print(f"{args.model}, {pre.num_tokens}-token context, {torch.get_num_threads()} threads")
    print(f"{'mode':<20}{'median ms/token':>16}{'vs dense':>10}")
    for label, times in per_mode.items():
        ms = statistics.median(times) * 1e3
        rows.append({"mode": label, "median_ms_per_token": ms, "ratio_vs_dense": ms / dense_ms, "samples": len(times)})
        print(f"{label:<20}{ms:>16.2f}{ms / dense_ms:>10.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"cpu-decode-{datetime.date.today().isoformat()}.json"
    record = {
        "benchmark": "cpu_decode_cost",
        "model": args.model,
        "context_tokens": pre.num_tokens,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "versions": versions(),
        "rows": rows,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

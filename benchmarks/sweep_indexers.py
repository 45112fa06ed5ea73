"""Sweep the indexer kernels' launch settings (software-pipelining depth, programs per SM) on the GPU.

For a few pipeline points, cold-L2 medians (CUDA-graph replays) of: the index stage (label or page
scores with their fused counts) per (stages, programs per SM), and index + top-k per (filter stages,
filter programs per SM) with the index settings left at their defaults. Prints a table per sweep and the
best setting; --json writes every number. Usage: PYTHONPATH=src python benchmarks/sweep_indexers.py
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

import ctxsparse.gpu_index.label_score as label_module
import ctxsparse.gpu_index.page_score as page_module
import ctxsparse.gpu_index.topk as topk_module
from ctxsparse.bench.pipeline import PipelineShape
from ctxsparse.bench.pipeline_gpu import _plan, build_cache
from ctxsparse.bench.timing import L2Flusher, cold_l2_time

POINTS = [PipelineShape("ds", 8, 131072, 50), PipelineShape("quest", 8, 131072, 50), PipelineShape("ds", 1, 32768, 50)]
STAGES = (1, 2, 3, 4)
PER_SM = (4, 8, 16)


def _time(fn, flusher, iters: int) -> float:
    return cold_l2_time(fn, flusher, iters).median_us


def sweep_point(shape: PipelineShape, flusher, iters: int) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(0)
    cache = build_cache(shape, {shape.page_size}, gen)
    pipe, state = _plan(shape, cache)
    module = label_module if shape.indexer == "ds" else page_module
    defaults = (module.STAGES, module.PER_SM, topk_module.FILTER_STAGES, topk_module.FILTER_PER_SM)
    index, select = {}, {}
    for stages, per_sm in itertools.product(STAGES, PER_SM):
        module.STAGES, module.PER_SM = stages, per_sm
        index[f"{stages},{per_sm}"] = _time(lambda: pipe.index(cache.q, *state), flusher, iters)
    module.STAGES, module.PER_SM = defaults[:2]
    for stages, per_sm in itertools.product(STAGES[:3], PER_SM):
        topk_module.FILTER_STAGES, topk_module.FILTER_PER_SM = stages, per_sm
        select[f"{stages},{per_sm}"] = _time(lambda: (pipe.index(cache.q, *state), pipe.select()), flusher, iters)
    topk_module.FILTER_STAGES, topk_module.FILTER_PER_SM = defaults[2:]
    return {"point": f"{shape.indexer} B={shape.batch} N={shape.context} S={shape.sparsity}", "defaults": defaults,
            "index_us": index, "index_topk_us": select}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    flusher = L2Flusher("cuda", "read")
    results = []
    for shape in POINTS:
        res = sweep_point(shape, flusher, args.iters)
        torch.cuda.empty_cache()
        results.append(res)
        for name in ("index_us", "index_topk_us"):
            cells = "  ".join(f"{k}:{v:6.1f}" for k, v in res[name].items())
            best = min(res[name], key=res[name].get)
            print(f"{res['point']} {name} (stages,per_sm) {cells}  best {best}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The GPU side of `ctxsparse bench pipeline`: build each (batch, context) cache once, time every point on it.

The KV cache is stored token-major in pages of 16 ([pages, 16, Hkv, D]), as FlashInfer's dense decode
reads it; the pipeline reads the same storage through [B, Hkv, N, D] views. The Double Sparsity label
cache uses random channels per kv head; Quest's page bounds come from the keys.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ctxsparse.bench.pipeline import PipelineRow, PipelineShape, format_table
from ctxsparse.bench.timing import L2Flusher, Timing, cold_l2_time
from ctxsparse.gpu_index import (
    DoubleSparsityDecode,
    QuestDecode,
    RowTopK,
    label_cache_from_keys,
    page_bounds_from_keys,
)

CACHE_PAGE = 16  # FlashInfer's dense baseline page size


@dataclass
class Cache:
    """One (batch, context) cache: paged storage, its [B, Hkv, N, D] views, a query, indexer states."""

    k_pages: torch.Tensor
    v_pages: torch.Tensor
    table: torch.Tensor
    k_view: torch.Tensor
    v_view: torch.Tensor
    q: torch.Tensor
    channels: torch.Tensor
    labels: torch.Tensor
    bounds: dict[int, tuple[torch.Tensor, torch.Tensor]]


def build_cache(shape: PipelineShape, page_sizes: set[int], gen: torch.Generator) -> Cache:
    """Random bf16 K/V pages on gen's device, their views, a query, random channels, labels and page bounds."""
    b, n, h, d = shape.batch, shape.context, shape.kv_heads, shape.head_dim
    dev = gen.device
    pages = b * math.ceil(n / CACHE_PAGE)
    k_pages = torch.randn(pages, CACHE_PAGE, h, d, device=dev, generator=gen, dtype=torch.bfloat16)
    v_pages = torch.randn(pages, CACHE_PAGE, h, d, device=dev, generator=gen, dtype=torch.bfloat16)
    table = torch.arange(pages, device=dev, dtype=torch.int32).view(b, -1)
    k_view = k_pages.view(b, -1, h, d)[:, :n].transpose(1, 2)  # strides (N*Hkv*D, D, Hkv*D, 1)
    v_view = v_pages.view(b, -1, h, d)[:, :n].transpose(1, 2)
    q = torch.randn(b, shape.q_heads, d, device=dev, generator=gen, dtype=torch.bfloat16)
    perms = torch.rand(h, d, device=dev, generator=gen).argsort(-1)
    channels = perms[:, : shape.channels].to(torch.int32).contiguous()
    labels = label_cache_from_keys(k_view, channels)
    bounds = {ps: page_bounds_from_keys(k_view, ps) for ps in page_sizes}
    return Cache(k_pages, v_pages, table, k_view, v_view, q, channels, labels, bounds)


def _fits(shape: PipelineShape) -> str | None:
    free, _ = torch.cuda.mem_get_info()
    need = 2.6 * shape.dense_bytes + 2 * 2**30  # K/V, a padded copy for the page bounds, workspaces
    return None if need < free else f"needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"


def _measure(row: PipelineRow, name: str, fn: Callable[[], object], flusher: L2Flusher, iters: int) -> None:
    """Time fn into row.<name>_us (cold L2, graph replay); a failure is recorded in row.skipped."""
    try:
        timing: Timing = cold_l2_time(fn, flusher, iters)
        setattr(row, f"{name}_us", timing.median_us)
        row.timings[name] = timing.as_dict()
    except Exception as err:  # one failed measurement must not end the sweep
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        row.skipped[name] = f"{type(err).__name__}: {err}"


def _plan(shape: PipelineShape, cache: Cache):
    """The planned pipeline of a point and the indexer state its run() takes."""
    sizes = dict(batch=shape.batch, num_q_heads=shape.q_heads, num_kv_heads=shape.kv_heads,
                 head_dim=shape.head_dim, context=shape.context, k=shape.k, device=cache.q.device)  # fmt: skip
    if shape.indexer == "ds":
        pipe = DoubleSparsityDecode()
        pipe.plan(**sizes, channels=cache.channels)
        return pipe, (cache.labels,)
    pipe = QuestDecode()
    pipe.plan(**sizes, page_size=shape.page_size)
    return pipe, cache.bounds[shape.page_size]


def _selection_is_exact(pipe, scores: torch.Tensor, chosen: torch.Tensor) -> bool:
    """The chosen items' scores are each row's top-k scores (as multisets: float16 ties allowed)."""
    rows = scores.view(chosen.shape[0] * chosen.shape[1], -1).float()
    picked = chosen.reshape(rows.shape[0], -1).long()
    want = rows.topk(picked.shape[1], dim=1).values.sort(1).values
    return bool(torch.equal(rows.gather(1, picked).sort(1).values, want))


def time_point(shape: PipelineShape, cache: Cache, flusher, iters: int, with_fi: bool, with_topk: bool) -> PipelineRow:
    row = PipelineRow(shape)
    pipe, state = _plan(shape, cache)
    q, kv, vv = cache.q, cache.k_view, cache.v_view
    pipe.run(q, kv, vv, *state)
    chosen = pipe.indices if shape.indexer == "ds" else pipe.page_indices
    if not _selection_is_exact(pipe, pipe.scores, chosen):
        row.skipped["check"] = "the pipeline's selection is not the top-k of its scores"
    _measure(row, "pipeline", lambda: pipe.run(q, kv, vv, *state), flusher, iters)
    _measure(row, "index", lambda: pipe.index(q, *state), flusher, iters)
    _measure(row, "index_topk", lambda: (pipe.index(q, *state), pipe.select()), flusher, iters)
    _measure(row, "attention", lambda: pipe.attend(q, kv, vv), flusher, iters)
    if with_topk and shape.indexer == "ds":
        scores = pipe.scores.view(-1, shape.items)
        ours = RowTopK()
        ours.plan(scores.shape[0], scores.shape[1], shape.k_items, scores.dtype, scores.device)
        _measure(row, "topk_ours", lambda: ours.run(scores), flusher, iters)
        _measure(row, "topk_torch", lambda: torch.topk(scores, shape.k_items, dim=-1, sorted=False), flusher, iters)
        if with_fi:
            import flashinfer

            _measure(row, "topk_flashinfer", lambda: flashinfer.top_k(scores, shape.k_items), flusher, iters)
    return row


def _time_dense(shape: PipelineShape, cache: Cache, flusher, iters: int):
    """FlashInfer's dense decode on this cache, both use_tensor_cores settings timed, the faster kept (an Anchor)."""
    from ctxsparse.attention.flashinfer_backend import FlashInferDense
    from ctxsparse.bench.anchors import Anchor, plan_anchor

    try:
        runner = FlashInferDense(cache.q.device)
    except Exception as err:  # FlashInfer cannot start: every row of this cache says why
        return Anchor(reason=f"flashinfer dense failed: {type(err).__name__}: {err}")
    anchor = plan_anchor(
        runner,
        lambda r: r.plan(cache.table, shape.context, cache.k_pages, shape.q_heads, shape.head_dim**-0.5,
                         v_cache=cache.v_pages),
        lambda r: lambda: r.run(cache.q, cache.k_pages, cache.v_pages),
        lambda fn: cold_l2_time(fn, flusher, iters),
    )  # fmt: skip
    if anchor.reason:
        if cache.q.is_cuda:
            torch.cuda.synchronize()
        anchor.reason = f"flashinfer dense refused: {anchor.reason}"
    return anchor


def run_points(
    shapes: list[PipelineShape], iters: int, flush: str, with_fi: bool, with_topk: bool, copy_tbps: float,
    missing: str = "flashinfer not run", budget_s: float | None = None,
) -> list[PipelineRow]:  # fmt: skip
    """Time every point, printing each row as it lands; one cache and one dense timing per (batch, context).

    budget_s: no new cache group starts once this many seconds have passed; its points are recorded as skipped.
    """
    flusher = L2Flusher("cuda", flush)
    gen = torch.Generator(device="cuda").manual_seed(0)
    groups: dict[tuple[int, int], list[PipelineShape]] = {}
    for s in shapes:
        groups.setdefault((s.batch, s.context), []).append(s)
    rows: list[PipelineRow] = []
    start = time.monotonic()
    for group in groups.values():
        reason = _fits(group[0])
        if budget_s is not None and time.monotonic() - start > budget_s:
            reason = f"time budget of {budget_s:.0f} s spent before this (batch, context)"
        if reason:
            rows += [PipelineRow(s, skipped={"all": reason}) for s in group]
            continue
        cache = build_cache(group[0], {s.page_size for s in group if s.indexer == "quest"}, gen)
        dense = _time_dense(group[0], cache, flusher, iters) if with_fi else None
        for s in group:
            row = time_point(s, cache, flusher, iters, with_fi, with_topk)
            if dense is not None and dense.timing is not None:
                row.dense_us, row.timings["dense"], row.anchors["dense"] = (
                    dense.median_us,
                    dense.timing.as_dict(),
                    dense.record,
                )
            else:
                row.skipped["dense"] = missing if dense is None else dense.reason
            print(format_table([row], copy_tbps, header=not rows), flush=True)
            rows.append(row)
        del cache
        torch.cuda.empty_cache()
    return rows

"""`ctxsparse bench decode`: FlashInfer dense, FlashInfer vector-sparse and sparse_decode side by side.

Every point shares one KV cache stored token-major in pages of 16 ([pages, 16, Hkv, D]): FlashInfer's
dense decode reads it as a paged cache, its vector-sparse path as single-row pages, and sparse_decode
as a strided [B, Hkv, N, D] view. Selections are random, distinct and unsorted per (batch, kv head).
Times are cold-L2 medians; bytes are the selected K/V rows plus their int32 indices.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ctxsparse.bench.gpu_run import PEAK_TBPS, add_run_arguments, result_record, start_gpu_run, write_result

DESCRIPTION = "decode attention: FlashInfer dense, FlashInfer vector-sparse and sparse_decode, cold L2"
PAGE_SIZE = 16
DEFAULT_BATCHES = (1, 8, 32)
DEFAULT_CONTEXTS = (32768, 131072)
DEFAULT_SPARSITIES = (10, 20, 50, 100)
METHODS = ("dense", "fi_sparse", "ours")


@dataclass(frozen=True)
class DecodeShape:
    """One benchmark point: batch, context length N, sparsity S (k = ceil(N / S) tokens per kv head)."""

    batch: int
    context: int
    sparsity: int
    q_heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    elem_bytes: int = 2

    @property
    def k(self) -> int:
        return math.ceil(self.context / self.sparsity)

    @property
    def sparse_bytes(self) -> int:
        """Selected K and V rows once per (batch, kv head), plus one int32 index per selected token."""
        return self.batch * self.kv_heads * self.k * (2 * self.head_dim * self.elem_bytes + 4)

    @property
    def dense_bytes(self) -> int:
        """Every cached K and V row once per (batch, kv head)."""
        return self.batch * self.kv_heads * self.context * 2 * self.head_dim * self.elem_bytes

    @property
    def cache_bytes(self) -> int:
        return self.dense_bytes


def floor_us(nbytes: int, tbps: float) -> float:
    """Time to move nbytes at tbps terabytes per second, in microseconds."""
    return nbytes / (tbps * 1e12) * 1e6


def tbps(nbytes: int, micros: float | None) -> float | None:
    return None if not micros else nbytes / (micros * 1e-6) / 1e12


@dataclass
class DecodeRow:
    """Measured times (µs) of one point; a method that did not run has None and a reason in `skipped`."""

    shape: DecodeShape
    dense_us: float | None = None
    fi_sparse_us: float | None = None
    ours_us: float | None = None
    ours_vs_fi_rel_err: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, dict] = field(default_factory=dict)  # per method: median, p10, p90, iters, graphed

    def metrics(self, peak_tbps: float = PEAK_TBPS) -> dict[str, float | None]:
        """Achieved TB/s, speedups over dense and over FlashInfer sparse, share of the byte limit."""
        s = self.shape
        ratio = lambda a, b: None if not a or not b else a / b
        return {
            "dense_tbps": tbps(s.dense_bytes, self.dense_us),
            "fi_sparse_tbps": tbps(s.sparse_bytes, self.fi_sparse_us),
            "ours_tbps": tbps(s.sparse_bytes, self.ours_us),
            "fi_sparse_speedup_vs_dense": ratio(self.dense_us, self.fi_sparse_us),
            "ours_speedup_vs_dense": ratio(self.dense_us, self.ours_us),
            "ours_speedup_vs_fi_sparse": ratio(self.fi_sparse_us, self.ours_us),
            "ours_share_of_peak": ratio(floor_us(s.sparse_bytes, peak_tbps), self.ours_us),
            "fi_sparse_share_of_peak": ratio(floor_us(s.sparse_bytes, peak_tbps), self.fi_sparse_us),
        }

    def as_dict(self, peak_tbps: float = PEAK_TBPS) -> dict:
        s = self.shape
        out = asdict(s) | {"k": s.k, "sparse_bytes": s.sparse_bytes, "dense_bytes": s.dense_bytes}
        out |= {m + "_us": getattr(self, m + "_us") for m in METHODS}
        out |= {"ours_vs_fi_rel_err": self.ours_vs_fi_rel_err, "skipped": self.skipped, "timings": self.timings}
        return out | self.metrics(peak_tbps)


COLUMNS = (
    ("B", 3), ("N", 7), ("S", 4), ("k", 6), ("MB", 7), ("dense us", 9), ("FI-sp us", 9), ("ours us", 8),
    ("dense TB/s", 10), ("FI-sp TB/s", 10), ("ours TB/s", 9), ("FI/dense", 8), ("ours/dense", 10),
    ("ours/FI", 7), ("ours %peak", 10), ("ours %copy", 10),
)  # fmt: skip


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(rows: list[DecodeRow], header: bool = True, copy_tbps: float | None = None) -> str:
    """Fixed-width table: times, achieved TB/s, speedups, share of the byte floor (peak and copy rate)."""
    lines = []
    if header:
        lines.append(" ".join(name.rjust(width) for name, width in COLUMNS))
    notes = []
    for r in rows:
        s, m = r.shape, r.metrics()
        share_copy = None if not (copy_tbps and r.ours_us) else floor_us(s.sparse_bytes, copy_tbps) / r.ours_us
        pct = lambda v: None if v is None else 100 * v
        cells = (
            str(s.batch), str(s.context), str(s.sparsity), str(s.k), f"{s.sparse_bytes / 1e6:.1f}",
            _cell(r.dense_us, ".1f"), _cell(r.fi_sparse_us, ".1f"), _cell(r.ours_us, ".1f"),
            _cell(m["dense_tbps"], ".2f"), _cell(m["fi_sparse_tbps"], ".2f"), _cell(m["ours_tbps"], ".2f"),
            _cell(m["fi_sparse_speedup_vs_dense"], ".1f"), _cell(m["ours_speedup_vs_dense"], ".1f"),
            _cell(m["ours_speedup_vs_fi_sparse"], ".2f"), _cell(pct(m["ours_share_of_peak"]), ".0f"),
            _cell(pct(share_copy), ".0f"),
        )  # fmt: skip
        lines.append(" ".join(c.rjust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)))
        notes += [f"  B={s.batch} N={s.context} S={s.sparsity} {k}: {why}" for k, why in r.skipped.items()]
    return "\n".join(lines + notes)


def gpu_short_name(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'H100': the first word with a digit, else the name without spaces."""
    words = [w for w in name.replace("NVIDIA", "").split() if any(c.isdigit() for c in w)]
    return words[0] if words else "".join(name.split()) or "GPU"


def grid(batches, contexts, sparsities) -> list[DecodeShape]:
    return [DecodeShape(b, n, s) for n in contexts for b in batches for s in sparsities]


def random_selection(shape: DecodeShape, device, generator: torch.Generator) -> torch.Tensor:
    """int32 [B, Hkv, k]: k distinct positions per (batch, kv head), in random order."""
    scores = torch.rand(shape.batch, shape.kv_heads, shape.context, device=device, generator=generator)
    return scores.topk(shape.k, dim=-1).indices.to(torch.int32)


def _fits(shape: DecodeShape, with_flashinfer: bool) -> str | None:
    free, _ = torch.cuda.mem_get_info()
    need = shape.cache_bytes + (2 * 2**30 if with_flashinfer else 2**30)
    return None if need < free else f"needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"


def run_points(shapes: list[DecodeShape], iters: int, flush: str, with_flashinfer: bool) -> list[DecodeRow]:
    """Time every point; each (batch, context) cache and FlashInfer's dense plan are built once."""
    from ctxsparse.bench.timing import L2Flusher

    flusher = L2Flusher("cuda", flush)
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows: list[DecodeRow] = []
    for group in _by_cache(shapes).values():
        reason = _fits(group[0], with_flashinfer)
        if reason:
            rows += [DecodeRow(s, skipped={m: f"out of memory: {reason}" for m in METHODS}) for s in group]
            continue
        for row in _time_group(group, iters, flusher, gen, with_flashinfer):
            print(format_table([row], header=not rows), flush=True)
            rows.append(row)
        torch.cuda.empty_cache()
    return rows


def _time_group(group: list[DecodeShape], iters: int, flusher, gen: torch.Generator, with_flashinfer: bool):
    """Yield the rows of points that share one cache (same batch and context)."""
    from ctxsparse.attention import sparse_decode
    from ctxsparse.bench.timing import cold_l2_time

    first = group[0]
    b, n, h, d = first.batch, first.context, first.kv_heads, first.head_dim
    pages = b * math.ceil(n / PAGE_SIZE)
    k_pages = torch.randn(pages, PAGE_SIZE, h, d, device="cuda", generator=gen, dtype=torch.bfloat16)
    v_pages = torch.randn(pages, PAGE_SIZE, h, d, device="cuda", generator=gen, dtype=torch.bfloat16)
    table = torch.arange(pages, device="cuda", dtype=torch.int32).view(b, -1)
    # [B, Hkv, N, D] views of the token-major pages: strides (N*Hkv*D, D, Hkv*D, 1)
    k_view = k_pages.view(b, -1, h, d)[:, :n].transpose(1, 2)
    v_view = v_pages.view(b, -1, h, d)[:, :n].transpose(1, 2)
    q = torch.randn(b, first.q_heads, d, device="cuda", generator=gen, dtype=torch.bfloat16)
    scale = d**-0.5
    dense, skipped, sparse = None, {}, None
    if not with_flashinfer:
        skipped = {"dense": "flashinfer not run", "fi_sparse": "flashinfer not run"}
    else:
        from ctxsparse.attention.flashinfer_backend import FlashInferDense, FlashInferVectorSparse

        try:
            runner = FlashInferDense(q.device)
            runner.plan(table, n, k_pages, first.q_heads, scale)
            dense = cold_l2_time(lambda: runner.run(q, k_pages, v_pages), flusher, iters)
        except Exception as err:  # a baseline's failure is recorded in its rows, not fatal
            skipped["dense"] = f"flashinfer dense failed: {type(err).__name__}: {err}"
        sparse = FlashInferVectorSparse(q.device)
    for s in group:
        row = DecodeRow(s, skipped=dict(skipped))
        if dense is not None:
            row.dense_us, row.timings["dense"] = dense.median_us, dense.as_dict()
        idx = random_selection(s, "cuda", gen)
        ours = functools.partial(sparse_decode, q, k_view, v_view, idx, scale=scale, backend="triton")
        timing = cold_l2_time(ours, flusher, iters)
        row.ours_us, row.timings["ours"] = timing.median_us, timing.as_dict()
        if sparse is not None:
            try:
                sparse.plan(idx, None, k_view, v_view, s.q_heads, scale)
                timing = cold_l2_time(functools.partial(sparse.run, q), flusher, iters)
                row.fi_sparse_us, row.timings["fi_sparse"] = timing.median_us, timing.as_dict()
                ref = sparse.run(q).float()
                row.ours_vs_fi_rel_err = float((ours().float() - ref).norm() / ref.norm())
            except Exception as err:
                row.skipped["fi_sparse"] = f"flashinfer vector-sparse failed: {type(err).__name__}: {err}"
        yield row


def _by_cache(shapes: list[DecodeShape]) -> dict[tuple[int, int], list[DecodeShape]]:
    groups: dict[tuple[int, int], list[DecodeShape]] = {}
    for s in shapes:
        groups.setdefault((s.batch, s.context), []).append(s)
    return groups


def results_path(out_dir: Path, gpu_name: str, date: dt.date) -> Path:
    """benchmarks/results/decode-<GPU>-<YYYY-MM-DD>.json."""
    return Path(out_dir) / f"decode-{gpu_short_name(gpu_name)}-{date.isoformat()}.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    parser.add_argument("--context", type=int, nargs="+", default=list(DEFAULT_CONTEXTS))
    parser.add_argument("--sparsity", type=int, nargs="+", default=list(DEFAULT_SPARSITIES))
    add_run_arguments(parser, iters=50, no_flashinfer_help="time sparse_decode alone")


def run_cli(args: argparse.Namespace) -> int:
    """Run the grid, print the table, write the JSON; refuses to run without CUDA."""
    gpu, copy_tbps, with_fi = start_gpu_run("decode", args)
    rows = run_points(grid(args.batch, args.context, args.sparsity), args.iters, args.flush, with_fi)
    result = result_record(
        gpu, copy_tbps, args, "CUDA-graph replay between cold-L2 flushes, CUDA events (rows' timings say if eager)"
    )
    result["setup"] = {"dtype": "bfloat16", "page_size": PAGE_SIZE, "selection": "random distinct, unsorted"}
    result["rows"] = [r.as_dict() for r in rows]
    path = write_result(result, args.output or results_path(args.output_dir, gpu, dt.date.today()))
    print(format_table(rows, copy_tbps=copy_tbps))
    print(f"wrote {path}")
    return 0

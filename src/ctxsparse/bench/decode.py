"""`ctxsparse bench decode`: FlashInfer dense, FlashInfer vector-sparse and sparse_decode side by side.

Every point shares one KV cache stored token-major in pages of 16 ([pages, 16, Hkv, D]): FlashInfer's
dense decode reads it as a paged cache, its vector-sparse path as single-row pages, and sparse_decode
as a strided [B, Hkv, N, D] view. Selections are random, distinct and unsorted per (batch, kv head).
Both FlashInfer anchors time their use_tensor_cores settings per shape and run the faster (both times are
recorded). Times are cold-L2 medians of graph replays, plus sparse_decode called eagerly (no graph);
bytes are the selected K/V rows plus their int32 indices; efficiency is against the measured copy rate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ctxsparse.bench.gpu_run import add_run_arguments, result_record, start_gpu_run, write_result

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
    """Measured times (µs) of one point; a method that did not run has None and a reason in `skipped`.

    dense_us / fi_sparse_us are FlashInfer's faster use_tensor_cores setting (`anchors` has both times);
    ours_eager_us: sparse_decode called without a graph on an idle GPU (host launch work included),
    ours_host_us: the host time of that call alone.
    """

    shape: DecodeShape
    dense_us: float | None = None
    fi_sparse_us: float | None = None
    ours_us: float | None = None
    ours_eager_us: float | None = None
    ours_host_us: float | None = None
    ours_vs_fi_rel_err: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, dict] = field(default_factory=dict)  # per method: median, p10, p90, iters, graphed
    anchors: dict[str, dict] = field(default_factory=dict)  # dense / fi_sparse: winner, both settings' times

    def metrics(self, copy_tbps: float | None = None, peak_tbps: float | None = None) -> dict[str, float | None]:
        """Achieved TB/s, speedups over dense and over FlashInfer sparse, share of the byte floor at the
        copy rate (the main efficiency figure) and at the datasheet peak."""
        s = self.shape
        ratio = lambda a, b: None if not a or not b else a / b
        share = lambda rate, us: None if not rate else ratio(floor_us(s.sparse_bytes, rate), us)
        return {
            "dense_tbps": tbps(s.dense_bytes, self.dense_us),
            "fi_sparse_tbps": tbps(s.sparse_bytes, self.fi_sparse_us),
            "ours_tbps": tbps(s.sparse_bytes, self.ours_us),
            "fi_sparse_speedup_vs_dense": ratio(self.dense_us, self.fi_sparse_us),
            "ours_speedup_vs_dense": ratio(self.dense_us, self.ours_us),
            "ours_speedup_vs_fi_sparse": ratio(self.fi_sparse_us, self.ours_us),
            "ours_share_of_copy": share(copy_tbps, self.ours_us),
            "fi_sparse_share_of_copy": share(copy_tbps, self.fi_sparse_us),
            "ours_share_of_peak": share(peak_tbps, self.ours_us),
            "fi_sparse_share_of_peak": share(peak_tbps, self.fi_sparse_us),
        }

    def as_dict(self, copy_tbps: float | None = None, peak_tbps: float | None = None) -> dict:
        s = self.shape
        out = asdict(s) | {"k": s.k, "sparse_bytes": s.sparse_bytes, "dense_bytes": s.dense_bytes}
        out |= {m + "_us": getattr(self, m + "_us") for m in METHODS}
        out |= {"ours_eager_us": self.ours_eager_us, "ours_host_us": self.ours_host_us}
        out |= {"ours_vs_fi_rel_err": self.ours_vs_fi_rel_err, "skipped": self.skipped, "timings": self.timings}
        out |= {"anchors": self.anchors}
        return out | self.metrics(copy_tbps, peak_tbps)


COLUMNS = (
    ("B", 3), ("N", 7), ("S", 4), ("k", 6), ("MB", 7), ("dense us", 9), ("TC", 3), ("FI-sp us", 9),
    ("ours us", 8), ("eager us", 8), ("host us", 7), ("ours TB/s", 9), ("FI/dense", 8), ("ours/dense", 10),
    ("ours/FI", 7), ("ours %copy", 10), ("ours %peak", 10),
)  # fmt: skip


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _tensor_cores(anchor: dict | None) -> str:
    """'y' / 'n': the winning dense setting used tensor cores or not; '-' where dense did not run."""
    return "-" if not anchor or "use_tensor_cores" not in anchor else "yn"[not anchor["use_tensor_cores"]]


def format_table(
    rows: list[DecodeRow], header: bool = True, copy_tbps: float | None = None, peak_tbps: float | None = None
) -> str:
    """Fixed-width table: times (graphed and eager), TB/s, speedups, share of the byte floor at the copy
    rate and at the peak. TC: whether the faster FlashInfer dense setting used tensor cores."""
    lines = []
    if header:
        lines.append(" ".join(name.rjust(width) for name, width in COLUMNS))
    notes = []
    for r in rows:
        s, m = r.shape, r.metrics(copy_tbps, peak_tbps)
        pct = lambda v: None if v is None else 100 * v
        cells = (
            str(s.batch), str(s.context), str(s.sparsity), str(s.k), f"{s.sparse_bytes / 1e6:.1f}",
            _cell(r.dense_us, ".1f"), _tensor_cores(r.anchors.get("dense")), _cell(r.fi_sparse_us, ".1f"),
            _cell(r.ours_us, ".1f"), _cell(r.ours_eager_us, ".1f"), _cell(r.ours_host_us, ".1f"),
            _cell(m["ours_tbps"], ".2f"), _cell(m["fi_sparse_speedup_vs_dense"], ".1f"),
            _cell(m["ours_speedup_vs_dense"], ".1f"), _cell(m["ours_speedup_vs_fi_sparse"], ".2f"),
            _cell(pct(m["ours_share_of_copy"]), ".0f"), _cell(pct(m["ours_share_of_peak"]), ".0f"),
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


def run_points(
    shapes: list[DecodeShape], iters: int, flush: str, with_flashinfer: bool, copy_tbps: float | None = None,
    peak_tbps: float | None = None, missing: str = "flashinfer not run", budget_s: float | None = None,
) -> list[DecodeRow]:  # fmt: skip
    """Time every point; each (batch, context) cache and FlashInfer's dense plan are built once.

    budget_s: no new cache group starts once this many seconds have passed; its points are recorded as skipped.
    """
    from ctxsparse.bench.timing import L2Flusher

    flusher = L2Flusher("cuda", flush)
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows: list[DecodeRow] = []
    start = time.monotonic()
    for group in _by_cache(shapes).values():
        reason = _fits(group[0], with_flashinfer)
        reason = reason and f"out of memory: {reason}"
        if budget_s is not None and time.monotonic() - start > budget_s:
            reason = f"time budget of {budget_s:.0f} s spent before this (batch, context)"
        if reason:
            rows += [DecodeRow(s, skipped=dict.fromkeys(METHODS, reason)) for s in group]
            continue
        for row in _time_group(group, iters, flusher, gen, with_flashinfer, missing):
            print(format_table([row], header=not rows, copy_tbps=copy_tbps, peak_tbps=peak_tbps), flush=True)
            rows.append(row)
        torch.cuda.empty_cache()
    return rows


def _time_group(
    group: list[DecodeShape], iters: int, flusher, gen: torch.Generator, with_flashinfer: bool, missing: str
):
    """Yield the rows of points that share one cache (same batch and context), built on gen's device."""
    from ctxsparse.attention import sparse_decode
    from ctxsparse.bench.anchors import Anchor, plan_anchor
    from ctxsparse.bench.timing import cold_l2_time, eager_time

    first, dev = group[0], gen.device
    b, n, h, d = first.batch, first.context, first.kv_heads, first.head_dim
    pages = b * math.ceil(n / PAGE_SIZE)
    k_pages = torch.randn(pages, PAGE_SIZE, h, d, device=dev, generator=gen, dtype=torch.bfloat16)
    v_pages = torch.randn(pages, PAGE_SIZE, h, d, device=dev, generator=gen, dtype=torch.bfloat16)
    table = torch.arange(pages, device=dev, dtype=torch.int32).view(b, -1)
    # [B, Hkv, N, D] views of the token-major pages: strides (N*Hkv*D, D, Hkv*D, 1)
    k_view = k_pages.view(b, -1, h, d)[:, :n].transpose(1, 2)
    v_view = v_pages.view(b, -1, h, d)[:, :n].transpose(1, 2)
    q = torch.randn(b, first.q_heads, d, device=dev, generator=gen, dtype=torch.bfloat16)
    scale = d**-0.5
    time_call = lambda fn: cold_l2_time(fn, flusher, iters)
    dense, sparse = Anchor(reason=missing), None
    if with_flashinfer:
        from ctxsparse.attention.flashinfer_backend import FlashInferDense, FlashInferVectorSparse

        try:
            dense = plan_anchor(
                FlashInferDense(q.device),
                lambda r: r.plan(table, n, k_pages, first.q_heads, scale, v_cache=v_pages),
                lambda r: lambda: r.run(q, k_pages, v_pages),
                time_call,
            )
            sparse = FlashInferVectorSparse(q.device)
        except Exception as err:  # FlashInfer cannot even start here: every row says why
            dense = Anchor(reason=f"flashinfer failed: {type(err).__name__}: {err}")
    for s in group:
        row = DecodeRow(s)
        if dense.timing is not None:
            _record_anchor(row, "dense", dense)
        else:
            row.skipped["dense"] = dense.reason
        idx = random_selection(s, dev, gen)
        ours = functools.partial(sparse_decode, q, k_view, v_view, idx, scale=scale, backend="triton")
        timing = cold_l2_time(ours, flusher, iters)
        row.ours_us, row.timings["ours"] = timing.median_us, timing.as_dict()
        eager = eager_time(ours, flusher, iters)
        row.ours_eager_us, row.ours_host_us = eager.device.median_us, eager.host_median_us
        row.timings["ours_eager"] = eager.as_dict()
        if sparse is None:
            row.skipped["fi_sparse"] = dense.reason if with_flashinfer else missing
            yield row
            continue
        fi = plan_anchor(sparse, lambda r, i=idx, hq=s.q_heads: r.plan(i, None, k_view, v_view, hq, scale),
                         lambda r: functools.partial(r.run, q), time_call)  # fmt: skip
        if fi.timing is None:
            row.skipped["fi_sparse"] = f"flashinfer vector-sparse refused: {fi.reason}"
        else:
            _record_anchor(row, "fi_sparse", fi)
            ref = sparse.run(q).float()
            row.ours_vs_fi_rel_err = float((ours().float() - ref).norm() / ref.norm())
        yield row


def _record_anchor(row: DecodeRow, method: str, anchor) -> None:
    """The winning setting's median as the method's time; its timing and the choice record beside it."""
    setattr(row, f"{method}_us", anchor.median_us)
    row.timings[method] = anchor.timing.as_dict()
    row.anchors[method] = anchor.record


TARGETS = ((8, 131072, 50, 40.0), (1, 131072, 50, 15.0))  # (B, N, S, x over FlashInfer's best dense decode)


def target_report(rows: list[DecodeRow]) -> list[dict]:
    """The issue's targets: measured x over the best dense anchor, met or missed, and the byte ceiling
    (dense bytes / sparse bytes) that bounds it; FlashInfer's own sparse path beside it."""
    found = []
    for b, n, sp, want in TARGETS:
        row = next((r for r in rows if (r.shape.batch, r.shape.context, r.shape.sparsity) == (b, n, sp)), None)
        if row is None:
            continue
        m = row.metrics()
        x = m["ours_speedup_vs_dense"]
        found.append({
            "point": f"sparse_decode S={sp} B={b} N={n}", "speedup": x, "target": want,
            "verdict": "not measured" if x is None else "met" if x >= want else f"missed by {want / x:.2f}x",
            "byte_ceiling": row.shape.dense_bytes / row.shape.sparse_bytes,
            "fi_sparse_speedup": m["fi_sparse_speedup_vs_dense"],
            "dense_setting": row.anchors.get("dense", {}).get("setting"),
        })  # fmt: skip
    return found


def describe_target(t: dict) -> str:
    x = "-" if t["speedup"] is None else f"{t['speedup']:.1f}x"
    fi = "" if t["fi_sparse_speedup"] is None else f"; FlashInfer sparse {t['fi_sparse_speedup']:.1f}x"
    return (f"target {t['point']}: {x} over the best dense (>= {t['target']:g}x): {t['verdict']}; "
            f"byte ceiling {t['byte_ceiling']:.1f}x{fi}; dense setting {t['dense_setting']}")  # fmt: skip


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
    run = start_gpu_run("decode", args)
    bw = run.bandwidth
    shapes = grid(args.batch, args.context, args.sparsity)
    missing = run.flashinfer_note or "flashinfer not run"
    rows = run_points(shapes, args.iters, args.flush, run.with_flashinfer, bw.copy_tbps, bw.peak_tbps, missing,
                      args.budget_s)  # fmt: skip
    result = result_record(
        run, args, "CUDA-graph replay between cold-L2 flushes, CUDA events; eager: un-graphed calls on an idle GPU"
    )
    result["setup"] = {"dtype": "bfloat16", "page_size": PAGE_SIZE, "selection": "random distinct, unsorted"}
    result["rows"] = [r.as_dict(bw.copy_tbps, bw.peak_tbps) for r in rows]
    result["targets"] = target_report(rows)
    path = write_result(result, args.output or results_path(args.output_dir, run.gpu, dt.date.today()))
    print(format_table(rows, copy_tbps=bw.copy_tbps, peak_tbps=bw.peak_tbps))
    print("\n".join(describe_target(t) for t in result["targets"]))
    print(f"wrote {path}")
    return 0

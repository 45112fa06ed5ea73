"""`ctxsparse bench pipeline`: index -> top-k -> sparse_decode against FlashInfer dense decode, stage by stage.

For each point (indexer, batch B, context N, sparsity S) the whole pipeline is timed as one CUDA-graph
replay, and so are its stages (index; index + top-k; attention), giving each stage's share. Alongside,
the top-k stage against torch.topk and FlashInfer's top_k on the same score rows. The byte floor counts
what a perfect implementation must move: the indexer state (Double Sparsity: r of D key channels =
r/(2D) of dense K+V bytes; Quest: page min and max = 1/page_size of K+V), the scores written and read
once, and the selected K/V rows with their indices. Break-even S is where pipeline time = dense time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ctxsparse.bench.decode import floor_us, gpu_short_name
from ctxsparse.bench.gpu_run import add_run_arguments, result_record, start_gpu_run, write_result

DESCRIPTION = "index -> top-k -> sparse_decode pipeline vs FlashInfer dense decode, stage shares, break-even S"
INDEXERS = ("ds", "quest")
DEFAULT_BATCHES = (1, 8)
DEFAULT_CONTEXTS = (32768, 131072)
DEFAULT_SPARSITIES = (2, 3, 5, 10, 20, 50, 100)
SCORE_BYTES = 2  # the pipeline keeps its scores in float16
# x over FlashInfer's best dense decode at (indexer, B, N, S); break-even S at B = 8
SPEEDUP_TARGETS = (("ds", 8, 131072, 50, 8.0), ("quest", 8, 131072, 50, 9.0))
TARGET = {"break_even_s": 3, "break_even_batch": 8}


@dataclass(frozen=True)
class PipelineShape:
    """One point: indexer ('ds' Double Sparsity, 'quest'), batch, context N, sparsity S (k = ceil(N / S))."""

    indexer: str
    batch: int
    context: int
    sparsity: int
    q_heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    channels: int = 16
    page_size: int = 16
    elem_bytes: int = 2

    @property
    def k(self) -> int:
        return math.ceil(self.context / self.sparsity)

    @property
    def items(self) -> int:
        """Scored items per row: tokens (ds) or pages (quest)."""
        return self.context if self.indexer == "ds" else math.ceil(self.context / self.page_size)

    @property
    def k_items(self) -> int:
        return self.k if self.indexer == "ds" else math.ceil(self.k / self.page_size)

    @property
    def tokens_read(self) -> int:
        """Tokens attended per (batch, kv head): k, or whole pages covering k for quest."""
        return self.k if self.indexer == "ds" else self.k_items * self.page_size

    def stage_bytes(self) -> dict[str, int]:
        """Fewest bytes each stage must move (reads + writes), summed over batch and kv heads."""
        rows, d, e = self.batch * self.kv_heads, self.head_dim, self.elem_bytes
        state = self.channels * e if self.indexer == "ds" else 2 * d * e  # per scored item
        return {
            "index": rows * self.items * (state + SCORE_BYTES),
            "topk": rows * (self.items * SCORE_BYTES + self.k_items * 4),
            "attention": rows * self.tokens_read * (2 * d * e + 4),
        }

    @property
    def pipeline_bytes(self) -> int:
        return sum(self.stage_bytes().values())

    @property
    def dense_bytes(self) -> int:
        return self.batch * self.kv_heads * self.context * 2 * self.head_dim * self.elem_bytes


@dataclass
class PipelineRow:
    """Measured medians (µs) of one point; None where a method did not run (reason in `skipped`)."""

    shape: PipelineShape
    dense_us: float | None = None
    pipeline_us: float | None = None
    index_us: float | None = None
    index_topk_us: float | None = None
    attention_us: float | None = None
    topk_ours_us: float | None = None
    topk_torch_us: float | None = None
    topk_flashinfer_us: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, dict] = field(default_factory=dict)
    anchors: dict[str, dict] = field(default_factory=dict)  # dense: the winning setting and both settings' times

    def stages(self) -> dict[str, float | None]:
        """Stage times: index, top-k (index + top-k minus index), attention."""
        topk = None
        if self.index_topk_us is not None and self.index_us is not None:
            topk = max(self.index_topk_us - self.index_us, 0.0)
        return {"index": self.index_us, "topk": topk, "attention": self.attention_us}

    def shares(self) -> dict[str, float | None]:
        """Each stage's share of the summed stage times."""
        st = self.stages()
        if any(v is None for v in st.values()) or not sum(st.values()):
            return dict.fromkeys(st)
        total = sum(st.values())
        return {name: v / total for name, v in st.items()}

    @property
    def speedup(self) -> float | None:
        return None if not (self.dense_us and self.pipeline_us) else self.dense_us / self.pipeline_us

    def as_dict(self, copy_tbps: float | None = None, peak_tbps: float | None = None) -> dict:
        s = self.shape
        out = asdict(s) | {"k": s.k, "k_items": s.k_items, "tokens_read": s.tokens_read}
        out |= {"stage_bytes": s.stage_bytes(), "pipeline_bytes": s.pipeline_bytes, "dense_bytes": s.dense_bytes}
        out["bytes_ratio"] = s.dense_bytes / s.pipeline_bytes
        if peak_tbps:
            out["floor_us_peak"] = floor_us(s.pipeline_bytes, peak_tbps)
        if copy_tbps:
            out["floor_us_copy"] = floor_us(s.pipeline_bytes, copy_tbps)
        names = ("dense", "pipeline", "index", "index_topk", "attention", "topk_ours", "topk_torch", "topk_flashinfer")
        out |= {f"{m}_us": getattr(self, f"{m}_us") for m in names}
        out |= {"stages_us": self.stages(), "shares": self.shares(), "speedup_vs_dense": self.speedup}
        return out | {"skipped": self.skipped, "timings": self.timings, "anchors": self.anchors}


COLUMNS = (
    ("idx", 5), ("B", 2), ("N", 6), ("S", 3), ("k", 5), ("dense us", 8), ("TC", 2), ("pipe us", 8), ("x dense", 7),
    ("index%", 6), ("topk%", 5), ("attn%", 5), ("floor us", 8), ("%copy", 6), ("bytes x", 7),
    ("topk us", 7), ("torch us", 8), ("FI us", 7),
)  # fmt: skip


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(rows: list[PipelineRow], copy_tbps: float | None = None, header: bool = True) -> str:
    """Fixed-width table: times, speedup over dense, stage shares, byte floor at the measured copy rate,
    top-k against the baselines. TC: whether the faster FlashInfer dense setting used tensor cores."""
    lines = [" ".join(n.rjust(w) for n, w in COLUMNS)] if header else []
    notes = []
    for r in rows:
        s, sh = r.shape, r.shares()
        floor = None if not copy_tbps else floor_us(s.pipeline_bytes, copy_tbps)
        pct = lambda v: None if v is None else 100 * v
        dense_tc = r.anchors.get("dense", {}).get("use_tensor_cores")
        cells = (
            s.indexer, str(s.batch), str(s.context), str(s.sparsity), str(s.k), _cell(r.dense_us, ".1f"),
            "-" if dense_tc is None else "yn"[not dense_tc],
            _cell(r.pipeline_us, ".1f"), _cell(r.speedup, ".2f"), _cell(pct(sh["index"]), ".0f"),
            _cell(pct(sh["topk"]), ".0f"), _cell(pct(sh["attention"]), ".0f"), _cell(floor, ".1f"),
            _cell(None if not (r.pipeline_us and floor) else 100 * floor / r.pipeline_us, ".0f"),
            f"{s.dense_bytes / s.pipeline_bytes:.1f}", _cell(r.topk_ours_us, ".1f"), _cell(r.topk_torch_us, ".1f"),
            _cell(r.topk_flashinfer_us, ".1f"),
        )  # fmt: skip
        lines.append(" ".join(c.rjust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)))
        notes += [f"  {s.indexer} B={s.batch} N={s.context} S={s.sparsity} {m}: {why}" for m, why in r.skipped.items()]
    return "\n".join(lines + notes)


def break_even(rows: list[PipelineRow]) -> list[dict]:
    """Per (indexer, B, N): the smallest measured S with pipeline < dense, and the break-even S where the log-log
    line between neighbouring points crosses pipeline = dense; below_grid when the pipeline is faster already
    at the densest measured S (break-even below it), interpolated_s None when it never crosses in the grid."""
    groups: dict[tuple, list[PipelineRow]] = {}
    for r in rows:
        if r.speedup is not None:
            groups.setdefault((r.shape.indexer, r.shape.batch, r.shape.context), []).append(r)
    found = []
    for (indexer, b, n), group in groups.items():
        group.sort(key=lambda r: r.shape.sparsity)
        faster = [r.shape.sparsity for r in group if r.speedup > 1]
        crossing = None
        for lo, hi in zip(group, group[1:], strict=False):
            if crossing is None and lo.speedup <= 1 < hi.speedup:
                # log speedup is about linear in log S between neighbours
                t = math.log(lo.speedup) / (math.log(lo.speedup) - math.log(hi.speedup))
                crossing = math.exp(math.log(lo.shape.sparsity) + t * math.log(hi.shape.sparsity / lo.shape.sparsity))
        found.append({"indexer": indexer, "batch": b, "context": n, "smallest_faster_s": min(faster, default=None),
                      "interpolated_s": crossing, "below_grid": group[0].speedup > 1,
                      "densest_s": group[0].shape.sparsity})  # fmt: skip
    return found


def describe_break_even(e: dict) -> str:
    """'S = 3.42', 'S < 2 (faster at every measured S)' or 'not within the grid'."""
    if e["below_grid"]:
        return f"S < {e['densest_s']} (faster at every measured S)"
    return "not within the grid" if e["interpolated_s"] is None else f"S = {e['interpolated_s']:.2f}"


def target_report(rows: list[PipelineRow], evens: list[dict]) -> list[str]:
    """The targets (x over FlashInfer's best dense decode, break-even S), met or missed and by how much,
    with the byte ceiling (dense bytes / pipeline bytes) that bounds each speedup."""
    lines = []
    for indexer, b, n, s, want in SPEEDUP_TARGETS:
        row = next((r for r in rows if (r.shape.indexer, r.shape.batch, r.shape.context, r.shape.sparsity)
                    == (indexer, b, n, s) and r.speedup), None)  # fmt: skip
        if row is None:
            continue
        sh = row.shape
        ok = "met" if row.speedup >= want else f"missed by {want / row.speedup:.2f}x"
        lines.append(f"target {indexer} S={s} B={b} N={n}: {row.speedup:.2f}x over dense "
                     f"(>= {want}x): {ok}; byte ceiling {sh.dense_bytes / sh.pipeline_bytes:.1f}x "
                     f"({', '.join(f'{k} {v / 1e6:.0f} MB' for k, v in sh.stage_bytes().items())}, "
                     f"dense {sh.dense_bytes / 1e6:.0f} MB)")  # fmt: skip
    for e in evens:
        if e["batch"] != TARGET["break_even_batch"]:
            continue
        at = e["densest_s"] if e["below_grid"] else e["interpolated_s"]
        ok = "met" if at is not None and at <= TARGET["break_even_s"] else "missed"
        lines.append(f"break-even {e['indexer']} B={e['batch']} N={e['context']}: {describe_break_even(e)} "
                     f"(target S <= {TARGET['break_even_s']}): {ok}")  # fmt: skip
    return lines


def results_path(out_dir: Path, gpu_name: str, date: dt.date) -> Path:
    """benchmarks/results/pipeline-<GPU>-<YYYY-MM-DD>.json."""
    return Path(out_dir) / f"pipeline-{gpu_short_name(gpu_name)}-{date.isoformat()}.json"


def grid(indexers, batches, contexts, sparsities, channels: int = 16, page_size: int = 16) -> list[PipelineShape]:
    return [
        PipelineShape(ix, b, n, s, channels=channels, page_size=page_size)
        for b in batches
        for n in contexts
        for ix in indexers
        for s in sparsities
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--indexer", nargs="+", choices=INDEXERS, default=list(INDEXERS))
    parser.add_argument("--batch", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    parser.add_argument("--context", type=int, nargs="+", default=list(DEFAULT_CONTEXTS))
    parser.add_argument("--sparsity", type=int, nargs="+", default=list(DEFAULT_SPARSITIES))
    parser.add_argument("--channels", type=int, default=16, help="Double Sparsity label channels r")
    parser.add_argument("--page-size", type=int, default=16, help="Quest page size")
    parser.add_argument("--no-topk-baselines", action="store_true", help="skip the top-k comparison columns")
    add_run_arguments(parser, iters=30, no_flashinfer_help="skip the FlashInfer baselines")


def run_cli(args: argparse.Namespace) -> int:
    """Run the grid on the GPU, print the table, break-even S and targets, write the JSON."""
    from ctxsparse.bench.pipeline_gpu import run_points

    run = start_gpu_run("pipeline", args)
    bw = run.bandwidth
    shapes = grid(args.indexer, args.batch, args.context, args.sparsity, args.channels, args.page_size)
    rows = run_points(shapes, args.iters, args.flush, run.with_flashinfer, not args.no_topk_baselines, bw.copy_tbps,
                      missing=run.flashinfer_note or "flashinfer not run", budget_s=args.budget_s)  # fmt: skip
    evens = break_even(rows)
    result = result_record(
        run,
        args,
        "CUDA-graph replay between cold-L2 flushes, CUDA events; top-k stage = (index + top-k) - index",
    ) | {
        "setup": {
            "dtype": "bfloat16",
            "scores": "float16",
            "channels": "random per kv head",
            "aggregate": "sum over the GQA group",
            "dense": "FlashInfer paged decode, page_size 16, faster of use_tensor_cores off/on per (B, N)",
        },
        "rows": [r.as_dict(bw.copy_tbps, bw.peak_tbps) for r in rows],
        "break_even": evens,
        "targets": target_report(rows, evens),
    }
    path = write_result(result, args.output or results_path(args.output_dir, run.gpu, dt.date.today()))
    print(format_table(rows, bw.copy_tbps))
    for e in evens:
        print(f"break-even {e['indexer']} B={e['batch']} N={e['context']}: {describe_break_even(e)} "
              f"(smallest faster grid S: {e['smallest_faster_s']})")  # fmt: skip
    print("\n".join(result["targets"]))
    print(f"wrote {path}")
    return 0

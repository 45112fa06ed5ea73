"""The pipeline benchmark's arithmetic without a GPU: bytes, stage shares, break-even S, targets, table, naming."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from ctxsparse.bench.pipeline import (
    PipelineRow,
    PipelineShape,
    break_even,
    describe_break_even,
    format_table,
    grid,
    results_path,
    target_report,
)
from ctxsparse.cli.main import build_parser


def test_double_sparsity_bytes():
    s = PipelineShape("ds", batch=8, context=131072, sparsity=50)
    rows = 8 * 8
    assert s.k == s.k_items == s.tokens_read == 2622
    b = s.stage_bytes()
    assert b["index"] == rows * 131072 * (16 * 2 + 2)  # 16 bf16 label channels, a float16 score written
    assert b["topk"] == rows * (131072 * 2 + 2622 * 4)
    assert b["attention"] == rows * 2622 * (2 * 128 * 2 + 4)
    labels = rows * 131072 * 16 * 2
    assert s.dense_bytes == 16 * labels  # labels are 1/8 of K, 1/16 of K + V
    assert s.dense_bytes / s.pipeline_bytes == pytest.approx(11.03, rel=1e-3)


def test_quest_reads_whole_pages():
    s = PipelineShape("quest", batch=1, context=32768, sparsity=3)
    assert s.items == 2048 and s.k == 10923 and s.k_items == math.ceil(10923 / 16) == 683
    assert s.tokens_read == 683 * 16
    assert s.stage_bytes()["index"] == 8 * 2048 * (2 * 128 * 2 + 2)  # min and max rows per page


def test_stages_and_shares():
    row = PipelineRow(PipelineShape("ds", 8, 32768, 10), dense_us=400.0, pipeline_us=100.0, index_us=30.0,
                      index_topk_us=45.0, attention_us=55.0)  # fmt: skip
    assert row.stages() == {"index": 30.0, "topk": 15.0, "attention": 55.0}
    assert row.shares() == pytest.approx({"index": 0.3, "topk": 0.15, "attention": 0.55})
    assert row.speedup == pytest.approx(4.0)
    assert PipelineRow(row.shape, pipeline_us=1.0).shares() == {"index": None, "topk": None, "attention": None}
    assert PipelineRow(row.shape, index_us=10.0, index_topk_us=9.0, attention_us=1.0).stages()["topk"] == 0.0


def _rows(indexer, batch, context, pairs):
    return [PipelineRow(PipelineShape(indexer, batch, context, s), dense_us=100.0, pipeline_us=100.0 / x)
            for s, x in pairs]  # fmt: skip


def test_break_even_interpolates_in_log_space():
    rows = _rows("ds", 8, 32768, [(2, 0.5), (3, 0.8), (5, 2.0), (10, 4.0)])
    rows += _rows("ds", 8, 131072, [(2, 1.5), (3, 2.0)])
    rows += _rows("quest", 8, 32768, [(2, 0.5), (3, 0.6)])
    found = {(e["indexer"], e["context"]): e for e in break_even(rows)}
    e = found[("ds", 32768)]
    assert e["smallest_faster_s"] == 5
    # log 0.8 + t (log 2 - log 0.8) = 0 between S = 3 and S = 5
    t = math.log(0.8) / (math.log(0.8) - math.log(2.0))
    assert e["interpolated_s"] == pytest.approx(math.exp(math.log(3) + t * math.log(5 / 3)))
    assert 3 < e["interpolated_s"] < 5 and not e["below_grid"]
    assert describe_break_even(e) == f"S = {e['interpolated_s']:.2f}"
    below = found[("ds", 131072)]
    assert below["below_grid"] and below["interpolated_s"] is None and below["smallest_faster_s"] == 2
    assert describe_break_even(below) == "S < 2 (faster at every measured S)"
    never = found[("quest", 32768)]
    assert never["interpolated_s"] is None and never["smallest_faster_s"] is None and not never["below_grid"]
    assert describe_break_even(never) == "not within the grid"


def test_target_report_says_met_or_by_how_much():
    rows = _rows("ds", 8, 131072, [(2, 1.2), (50, 6.0)]) + _rows("ds", 8, 32768, [(2, 0.9), (3, 1.1)])
    text = target_report(rows, break_even(rows))
    assert "6.00x over dense" in text[0] and "missed by 1.33x" in text[0] and "byte ceiling 11.0x" in text[0]
    assert any("N=131072: S < 2" in line and line.endswith("met") for line in text)
    assert any("N=32768: S = " in line and line.endswith("met") for line in text)
    rows = _rows("ds", 8, 131072, [(50, 9.0)]) + _rows("quest", 8, 131072, [(50, 7.4)])
    text = target_report(rows, [])
    assert text[0].endswith(")") and ": met;" in text[0]
    assert text[1].startswith("target quest S=50") and "(>= 9.0x): missed by 1.22x" in text[1]


def test_table_is_fixed_width_and_lists_skips():
    rows = [
        PipelineRow(PipelineShape("ds", 8, 131072, 50), dense_us=1500.0, pipeline_us=150.0, index_us=90.0,
                    index_topk_us=110.0, attention_us=40.0, topk_ours_us=20.0, topk_torch_us=300.0,
                    anchors={"dense": {"use_tensor_cores": False}}),
        PipelineRow(PipelineShape("quest", 1, 32768, 2), skipped={"dense": "flashinfer not run"}),
    ]  # fmt: skip
    text = format_table(rows, copy_tbps=3.0).splitlines()
    assert text[0].split()[:4] == ["idx", "B", "N", "S"]
    cells = text[1].split()
    assert cells[:9] == ["ds", "8", "131072", "50", "2622", "1500.0", "n", "150.0", "10.00"]
    assert cells[9:12] == ["60", "13", "27"]  # stage shares of 90 + 20 + 40 µs
    floor = PipelineShape("ds", 8, 131072, 50).pipeline_bytes / 3e12 * 1e6
    assert cells[12:14] == [f"{floor:.1f}", f"{100 * floor / 150.0:.0f}"]  # the floor at the copy rate, % of it
    assert text[2].split()[5:7] == ["-", "-"] and "flashinfer not run" in text[3]
    assert len({len(line) for line in text[:3]}) == 1


def test_grid_path_and_cli():
    shapes = grid(["ds", "quest"], [1, 8], [32768, 131072], [2, 3, 5, 10, 20, 50, 100])
    assert len(shapes) == 56 and len(set(shapes)) == 56
    path = results_path(Path("benchmarks/results"), "NVIDIA H100 80GB HBM3", dt.date(2026, 11, 22))
    assert path == Path("benchmarks/results/pipeline-H100-2026-11-22.json")
    args = build_parser().parse_args(["bench", "pipeline", "--batch", "8", "--indexer", "ds"])
    assert args.batch == [8] and args.indexer == ["ds"] and args.sparsity == [2, 3, 5, 10, 20, 50, 100]

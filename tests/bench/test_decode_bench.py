"""The decode benchmark's arithmetic without a GPU: bytes moved, floors, metrics, table and file naming."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from ctxsparse.bench.decode import (
    DecodeRow,
    DecodeShape,
    describe_target,
    floor_us,
    format_table,
    gpu_short_name,
    grid,
    results_path,
    target_report,
)
from ctxsparse.bench.timing import L2Flusher, summarize
from ctxsparse.cli.main import build_parser


def test_bytes_count_selected_rows_and_indices():
    s = DecodeShape(batch=8, context=131072, sparsity=50)
    assert s.k == math.ceil(131072 / 50) == 2622
    # 8 batches x 8 kv heads x 2622 rows x (K + V: 2 x 128 x 2 bytes + a 4-byte index)
    assert s.sparse_bytes == 8 * 8 * 2622 * (512 + 4)
    assert s.dense_bytes == 8 * 8 * 131072 * 512
    assert s.dense_bytes / s.sparse_bytes == pytest.approx(49.6, rel=1e-2)
    assert floor_us(s.sparse_bytes, 3.35) == pytest.approx(25.85, rel=1e-3)


def test_metrics_from_times():
    s = DecodeShape(batch=1, context=32768, sparsity=10)
    row = DecodeRow(s, dense_us=100.0, fi_sparse_us=20.0, ours_us=10.0)
    m = row.metrics(copy_tbps=3.0, peak_tbps=3.35)
    assert m["ours_speedup_vs_dense"] == pytest.approx(10.0)
    assert m["ours_speedup_vs_fi_sparse"] == pytest.approx(2.0)
    assert m["ours_tbps"] == pytest.approx(s.sparse_bytes / 10e-6 / 1e12)
    assert m["ours_share_of_copy"] == pytest.approx(floor_us(s.sparse_bytes, 3.0) / 10.0)
    assert m["ours_share_of_peak"] == pytest.approx(floor_us(s.sparse_bytes, 3.35) / 10.0)
    assert m["fi_sparse_share_of_copy"] == pytest.approx(floor_us(s.sparse_bytes, 3.0) / 20.0)
    assert DecodeRow(s, ours_us=10.0).metrics()["ours_speedup_vs_dense"] is None
    assert DecodeRow(s, ours_us=10.0).metrics()["ours_share_of_copy"] is None  # no rate measured, no share


def test_table_has_a_row_per_point_and_lists_skips():
    rows = [
        DecodeRow(DecodeShape(1, 32768, 10), dense_us=50.0, fi_sparse_us=12.5, ours_us=5.0, ours_eager_us=21.0,
                  ours_host_us=18.5, anchors={"dense": {"use_tensor_cores": True}}),
        DecodeRow(DecodeShape(32, 131072, 10), skipped={"dense": "out of memory: needs 40 GiB"}, ours_us=900.0),
    ]  # fmt: skip
    text = format_table(rows, copy_tbps=3.0, peak_tbps=4.8).splitlines()
    assert text[0].split()[:4] == ["B", "N", "S", "k"]
    cells = text[1].split()
    assert cells[:4] == ["1", "32768", "10", "3277"] and cells[5:11] == ["50.0", "y", "12.5", "5.0", "21.0", "18.5"]
    assert cells[13] == "10.0" and cells[14] == "2.50"  # ours/dense, ours/FI
    s = rows[0].shape
    assert cells[15] == f"{100 * floor_us(s.sparse_bytes, 3.0) / 5.0:.0f}"  # % of the copy rate's floor
    assert cells[16] == f"{100 * floor_us(s.sparse_bytes, 4.8) / 5.0:.0f}"
    assert text[2].split()[5:7] == ["-", "-"]
    assert "out of memory" in text[3]
    assert len({len(line) for line in text[:3]}) == 1  # fixed width


def test_targets_against_the_best_dense_with_the_byte_ceiling():
    hit = DecodeRow(DecodeShape(8, 131072, 50), dense_us=978.0, fi_sparse_us=44.0, ours_us=24.0,
                    anchors={"dense": {"setting": "tensor_cores"}})  # fmt: skip
    miss = DecodeRow(DecodeShape(1, 131072, 50), dense_us=145.2, ours_us=12.4)
    found = target_report([miss, hit, DecodeRow(DecodeShape(8, 32768, 50), dense_us=1.0, ours_us=1.0)])
    assert [t["point"] for t in found] == ["sparse_decode S=50 B=8 N=131072", "sparse_decode S=50 B=1 N=131072"]
    assert found[0]["verdict"] == "met" and found[0]["speedup"] == pytest.approx(978.0 / 24.0)
    assert found[0]["byte_ceiling"] == pytest.approx(49.6, rel=1e-2) and found[0]["dense_setting"] == "tensor_cores"
    assert found[1]["verdict"] == f"missed by {15 / (145.2 / 12.4):.2f}x" and found[1]["fi_sparse_speedup"] is None
    line = describe_target(found[1])
    assert "11.7x over the best dense (>= 15x): missed by" in line and "byte ceiling 49.6x" in line


def test_grid_results_path_and_gpu_name():
    shapes = grid([1, 8, 32], [32768, 131072], [10, 20, 50, 100])
    assert len(shapes) == 24 and len(set(shapes)) == 24
    assert gpu_short_name("NVIDIA H100 80GB HBM3") == "H100"
    assert gpu_short_name("NVIDIA H200") == "H200"
    path = results_path(Path("benchmarks/results"), "NVIDIA H100 80GB HBM3", dt.date(2026, 11, 22))
    assert path == Path("benchmarks/results/decode-H100-2026-11-22.json")


def test_summarize_takes_the_median():
    t = summarize([5.0, 1.0, 3.0, 100.0, 2.0])
    assert t.median_us == 3.0 and t.iters == 5 and t.p10_us == 1.0 and t.p90_us == 100.0


def test_cli_parses_the_decode_grid():
    args = build_parser().parse_args(["bench", "decode", "--batch", "8", "--sparsity", "50", "--flush", "write"])
    assert args.batch == [8] and args.sparsity == [50] and args.context == [32768, 131072]
    assert args.flush == "write" and callable(args.run)


@pytest.mark.parametrize("mode", ["read", "write", "none"])
def test_flusher_streams_its_buffer(mode):
    flusher = L2Flusher("cpu", mode, nbytes=4096)
    flusher()
    assert flusher.buffer.numel() == (0 if mode == "none" else 512)
    if mode == "read":
        assert int(flusher.sink) == 512  # a sum of ones: every element was read
    if mode == "write":
        assert int(flusher.buffer.abs().sum()) == 0
    with pytest.raises(ValueError, match="flush mode"):
        L2Flusher("cpu", "evict")

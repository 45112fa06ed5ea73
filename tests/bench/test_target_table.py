"""The final table of target points, read back from result files written the way the benchmarks write them."""

from __future__ import annotations

import json

from ctxsparse.bench.decode import DecodeRow, DecodeShape
from ctxsparse.bench.pipeline import PipelineRow, PipelineShape
from ctxsparse.bench.target_table import format_targets, main


def _results():
    tc = {"dense": {"use_tensor_cores": True, "setting": "tensor_cores"}}
    decode = {"gpu": "NVIDIA H200", "bandwidth_note": "datasheet H200 4.8 TB/s", "rows": [
        DecodeRow(DecodeShape(8, 131072, 50), dense_us=978.0, ours_us=24.0, anchors=tc).as_dict(copy_tbps=4.0),
        DecodeRow(DecodeShape(1, 131072, 50), dense_us=145.2, ours_us=12.4, anchors=tc).as_dict(copy_tbps=4.0),
        DecodeRow(DecodeShape(1, 32768, 50), dense_us=52.9, ours_us=9.0).as_dict(copy_tbps=4.0),
    ]}  # fmt: skip
    pipeline = {"copy_tbps": 4.0, "rows": [
        PipelineRow(PipelineShape("ds", 8, 131072, 50), dense_us=978.0, pipeline_us=168.0, anchors=tc).as_dict(4.0),
    ]}  # fmt: skip
    return decode, pipeline


def test_every_target_point_with_verdict_and_byte_ceiling(tmp_path, capsys):
    decode, pipeline = _results()
    lines = format_targets(decode, pipeline).splitlines()
    assert lines[0].startswith("NVIDIA H200") and lines[1].split()[:2] == ["point", "ours"]
    b8, b1, ds = lines[2], lines[3], lines[4]
    assert "decode S=50 B=8 N=128K" in b8 and " 40.8 " in b8 and " met " in b8 and " 49.6 " in b8
    assert "decode S=50 B=1 N=128K" in b1 and "missed by 1.28x" in b1
    assert "ds pipeline S=50 B=8 N=128K" in ds and "missed by 1.37x" in ds and " 11.0 " in ds
    assert all(" y " in line for line in (b8, b1, ds))  # the tensor-core setting won dense
    assert len(lines) == 5  # no row for points that are not targets, none for the missing quest point
    (tmp_path / "d.json").write_text(json.dumps(decode))
    assert main([str(tmp_path / "d.json"), str(tmp_path / "absent.json")]) == 0
    assert "decode S=50 B=8" in capsys.readouterr().out
    assert "no target point" in format_targets(None, None)

"""The per-GPU bandwidth table: datasheet peaks by device name, the copy-rate fallback for unknown GPUs."""

from __future__ import annotations

import pytest

from ctxsparse.bench.peaks import bandwidth, datasheet_peak


@pytest.mark.parametrize(
    "name,tbps",
    [
        ("NVIDIA H100 80GB HBM3", 3.35),
        ("NVIDIA H100 PCIe", 2.0),
        ("NVIDIA H200", 4.8),
        ("NVIDIA A100-SXM4-80GB", 2.04),
        ("NVIDIA A100-SXM4-40GB", 1.56),
        ("NVIDIA L40S", 0.864),
        ("NVIDIA B200", 8.0),
    ],
)
def test_datasheet_peaks_by_device_name(name, tbps):
    assert datasheet_peak(name)[0] == tbps
    bw = bandwidth(name, 2.9)
    assert bw.peak_tbps == tbps and bw.copy_tbps == 2.9 and "datasheet" in bw.note


@pytest.mark.parametrize("name", ["NVIDIA GH200 480GB", "NVIDIA H100 NVL", "NVIDIA GB200", "Tesla T4", ""])
def test_unknown_gpu_falls_back_to_the_copy_rate(name):
    """Boards sharing a chip name with a known one (GH200, H100 NVL) are not given its peak."""
    bw = bandwidth(name, 3.1)
    assert bw.datasheet_tbps is None and bw.peak_tbps == 3.1
    assert "not in the datasheet table" in bw.note and "copy rate" in bw.note
    record = bw.as_dict()
    assert record["datasheet_tbps"] is None and record["peak_tbps"] == record["copy_tbps"] == 3.1


def test_copy_rate_must_be_measured():
    with pytest.raises(ValueError, match="copy rate must be positive"):
        bandwidth("NVIDIA H200", 0.0)

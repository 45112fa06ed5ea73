"""What every GPU benchmark run shares: its options, the GPU header, the result record and its file."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from ctxsparse.bench.peaks import Bandwidth, bandwidth
from ctxsparse.versions import versions

ANCHOR_COLUMNS = "dense and FI-sparse times and every ratio against them"


def add_run_arguments(parser: argparse.ArgumentParser, iters: int, no_flashinfer_help: str) -> None:
    """--iters, --flush, --no-flashinfer, --output-dir, --output."""
    parser.add_argument("--iters", type=int, default=iters, help="timed iterations per measurement")
    parser.add_argument("--flush", choices=("read", "write"), default="read", help="how L2 is evicted per iteration")
    parser.add_argument("--no-flashinfer", action="store_true", help=no_flashinfer_help)
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default: named by GPU and date)")
    budget_help = "start no new cache group after this many seconds (the rest are recorded as skipped)"
    parser.add_argument("--budget-s", type=float, default=None, help=budget_help)


@dataclass(frozen=True)
class GpuRun:
    """The GPU a benchmark runs on, its bandwidths, and whether the FlashInfer anchors run (and if not, why)."""

    gpu: str
    bandwidth: Bandwidth
    with_flashinfer: bool
    flashinfer_note: str | None = None

    @property
    def copy_tbps(self) -> float:
        return self.bandwidth.copy_tbps


def flashinfer_status(requested_off: bool, installed: bool) -> tuple[bool, str | None]:
    """(run the FlashInfer anchors, a note naming the missing columns when they do not run)."""
    if requested_off:
        return False, f"FlashInfer anchors not run (--no-flashinfer): no {ANCHOR_COLUMNS}"
    if not installed:
        return False, (f"FlashInfer is not installed: no {ANCHOR_COLUMNS}; our kernels still run "
                       "(pip install flashinfer-python for the anchors)")  # fmt: skip
    return True, None


def start_gpu_run(verb: str, args: argparse.Namespace) -> GpuRun:
    """The GPU, its measured copy rate beside its datasheet peak, and the FlashInfer status; printed as a
    header. Refuses without CUDA."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"bench {verb} needs a CUDA GPU.")
    from ctxsparse.attention.flashinfer_backend import flashinfer_available
    from ctxsparse.bench.timing import copy_bandwidth_tbps

    gpu = torch.cuda.get_device_name()
    bw = bandwidth(gpu, copy_bandwidth_tbps())
    print(f"{gpu}: device-to-device copy {bw.copy_tbps:.2f} TB/s (read + written); {bw.note}", flush=True)
    with_fi, note = flashinfer_status(args.no_flashinfer, flashinfer_available())
    if note:
        print(note, flush=True)
    return GpuRun(gpu, bw, with_fi, note)


def result_record(run: GpuRun, args: argparse.Namespace, method: str) -> dict:
    """The fields every benchmark JSON starts with: GPU, date, versions, bandwidths, anchors, how it was timed."""
    return {
        "gpu": run.gpu,
        "date": dt.date.today().isoformat(),
        "versions": versions(),
        **run.bandwidth.as_dict(),
        "efficiency_basis": "copy_tbps",
        "anchors": {
            "flashinfer": run.with_flashinfer,
            "note": run.flashinfer_note,
            "dense": "FlashInfer paged decode, faster of use_tensor_cores off/on timed per shape",
        },  # fmt: skip
        "timing": {"statistic": "median", "iters": args.iters, "l2_flush": args.flush, "unit": "us", "method": method},
    }


def write_result(result: dict, path: Path) -> Path:
    """Write the JSON record (creating its folder) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path

"""What every GPU benchmark run shares: its options, the GPU header, the result record and its file."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from ctxsparse.versions import versions

PEAK_TBPS = 3.35  # H100 80GB HBM3 datasheet bandwidth


def add_run_arguments(parser: argparse.ArgumentParser, iters: int, no_flashinfer_help: str) -> None:
    """--iters, --flush, --no-flashinfer, --output-dir, --output."""
    parser.add_argument("--iters", type=int, default=iters, help="timed iterations per measurement")
    parser.add_argument("--flush", choices=("read", "write"), default="read", help="how L2 is evicted per iteration")
    parser.add_argument("--no-flashinfer", action="store_true", help=no_flashinfer_help)
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default: named by GPU and date)")


def start_gpu_run(verb: str, args: argparse.Namespace) -> tuple[str, float, bool]:
    """(GPU name, measured copy TB/s, FlashInfer in use); refuses without CUDA and prints the header."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"bench {verb} needs a CUDA GPU.")
    from ctxsparse.attention.flashinfer_backend import flashinfer_available
    from ctxsparse.bench.timing import copy_bandwidth_tbps

    gpu = torch.cuda.get_device_name()
    copy_tbps = copy_bandwidth_tbps()
    print(f"{gpu}: device-to-device copy {copy_tbps:.2f} TB/s (read + write); peak {PEAK_TBPS} TB/s", flush=True)
    return gpu, copy_tbps, not args.no_flashinfer and flashinfer_available()


def result_record(gpu: str, copy_tbps: float, args: argparse.Namespace, method: str) -> dict:
    """The fields every benchmark JSON starts with: GPU, date, versions, bandwidths, how it was timed."""
    return {
        "gpu": gpu,
        "date": dt.date.today().isoformat(),
        "versions": versions(),
        "peak_tbps": PEAK_TBPS,
        "copy_tbps": copy_tbps,
        "timing": {"statistic": "median", "iters": args.iters, "l2_flush": args.flush, "unit": "us", "method": method},
    }


def write_result(result: dict, path: Path) -> Path:
    """Write the JSON record (creating its folder) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path

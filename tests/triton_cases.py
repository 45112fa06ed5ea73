"""Shared set-up of the Triton indexer tests: the interpreter on CPU-only machines, sizes, references.

Without CUDA the kernels run under TRITON_INTERPRET=1 (set here before triton is imported) on tiny
shapes; with CUDA (or CTXSPARSE_FULL_SIZE=1) the same tests run at full size.
"""

from __future__ import annotations

import importlib
import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
FULL = CUDA or os.environ.get("CTXSPARSE_FULL_SIZE", "0") == "1"
DEVICE = "cuda" if CUDA else "cpu"

pytest.importorskip("triton")

# Modules in import order: a module imported earlier without the interpreter is decorated again here.
_MODULES = (
    "ctxsparse.attention.triton_decode",
    "ctxsparse.gpu_index.launch",
    "ctxsparse.gpu_index.keys",
    "ctxsparse.gpu_index.topk",
    "ctxsparse.gpu_index.label_score",
    "ctxsparse.gpu_index.page_score",
    "ctxsparse.gpu_index.pipeline",
    "ctxsparse.gpu_index",
)


def load(name: str):
    """The module `ctxsparse.gpu_index.<name>`, its kernels interpreted when there is no CUDA."""
    launch = importlib.import_module("ctxsparse.gpu_index.launch")
    if not CUDA and not launch.INTERPRETED:
        for module in _MODULES:
            importlib.reload(importlib.import_module(module))
    return importlib.import_module(f"ctxsparse.gpu_index.{name}" if name else "ctxsparse.gpu_index")


def gen(seed: int) -> torch.Generator:
    return torch.Generator(device=DEVICE).manual_seed(seed)


def coarse_bins(scores: torch.Tensor) -> torch.Tensor:
    """Torch form of keys.coarse_bin: top byte of the order-preserving key of float16(x), in [0, 256)."""
    bits = scores.half().view(torch.int16).to(torch.int32)
    key = bits ^ ((bits >> 15) & 0x7FFF)
    return (key >> 8) + 128


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm())

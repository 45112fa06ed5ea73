"""Shared fixtures: random attention problems with padding and causality, and tiny models."""

from __future__ import annotations

import os

import pytest
import torch

# Without CUDA the Triton kernels run in Triton's interpreter; set it before any test module imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from ctxsparse.selectors.base import SelectionContext


def make_context(
    b: int = 2, hq: int = 4, hkv: int = 2, tq: int = 3, n: int = 40, d: int = 16, pad: int = 5, seed: int = 0
) -> tuple[SelectionContext, torch.Tensor]:
    """A SelectionContext whose row 0 is left-padded by `pad` and whose query rows are causal; and values."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, hq, tq, d, generator=gen)
    k = torch.randn(b, hkv, n, d, generator=gen)
    v = torch.randn(b, hkv, n, d, generator=gen)
    rows = torch.arange(tq).view(tq, 1) + (n - tq)
    vis = (torch.arange(n).view(1, n) <= rows).view(1, 1, tq, n).repeat(b, 1, 1, 1)
    vis[0, :, :, :pad] = False
    return SelectionContext(q, k, vis, d**-0.5), v


@pytest.fixture
def attention_case():
    return make_context

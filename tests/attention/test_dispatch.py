"""The model's sparse path picks the decode kernel for decode steps and the reference otherwise."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")
kernel = importlib.import_module("ctxsparse.attention.triton_decode")
if not torch.cuda.is_available() and not kernel.INTERPRETED:
    kernel = importlib.reload(kernel)

from ctxsparse import Selection  # noqa: E402
from ctxsparse.attention import sparse_attention_reference  # noqa: E402
from ctxsparse.attention.dispatch import kernel_applies, sparse_attention  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("granularity_heads", [2, 4])
def test_kernel_path_matches_reference(granularity_heads):
    gen = torch.Generator(device=DEVICE).manual_seed(granularity_heads)
    q = torch.randn(2, 4, 1, 64, generator=gen, device=DEVICE).bfloat16()
    k = torch.randn(2, 2, 40, 64, generator=gen, device=DEVICE).bfloat16()
    v = torch.randn(2, 2, 40, 64, generator=gen, device=DEVICE).bfloat16()
    idx = torch.randint(0, 40, (2, granularity_heads, 1, 9), generator=gen, device=DEVICE, dtype=torch.int32)
    sel = Selection(idx, lengths=torch.randint(1, 10, (2, granularity_heads, 1), device=DEVICE, dtype=torch.int32))
    out = sparse_attention(q, k, v, sel, 0.125, backend="triton")
    ref = sparse_attention_reference(q.float(), k.float(), v.float(), sel, 0.125)
    rel = torch.linalg.vector_norm(out.float() - ref) / torch.linalg.vector_norm(ref)
    assert out.shape == (2, 4, 1, 64) and rel < 1.5e-2


def test_auto_uses_reference_off_cuda_and_checks_backends():
    q = torch.randn(1, 2, 3, 64)
    assert not kernel_applies(q)
    k = torch.randn(1, 1, 10, 64)
    sel = Selection(torch.zeros(1, 2, 3, 1, dtype=torch.int32))
    torch.testing.assert_close(
        sparse_attention(q, k, k, sel, 0.1), sparse_attention_reference(q, k, k, sel, 0.1), atol=0, rtol=0
    )
    with pytest.raises(ValueError, match="one query token"):
        sparse_attention(q, k, k, sel, 0.1, backend="triton")
    with pytest.raises(ValueError, match="Unknown attention backend"):
        sparse_attention(q, k, k, sel, 0.1, backend="cuda")

"""The one-kernel rotary embedding (Triton interpreter on CPU) against the families' apply_rotary_pos_emb."""

from __future__ import annotations

import pytest
import torch
from transformers.models.llama import modeling_llama

from ctxsparse.engine.rotary import fast_rotary, rotary
from ctxsparse.gpu_index.launch import INTERPRETED

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter test")


def test_one_kernel_rotary_equals_the_function_on_strided_inputs():
    """Query and key as the fused projections hand them over (strided views of one row); float32 bit for bit
    (half precision rounds the same way on a GPU; the interpreter truncates its casts instead)."""
    original = modeling_llama.apply_rotary_pos_emb
    gen = torch.Generator().manual_seed(0)
    row = torch.randn(3, 1, 6 * 64 + 2 * 64, generator=gen)
    q = row[..., : 6 * 64].view(3, 1, 6, 64).transpose(1, 2)
    k = row[..., 6 * 64 :].view(3, 1, 2, 64).transpose(1, 2)
    cos, sin = torch.randn(3, 1, 64, generator=gen), torch.randn(3, 1, 64, generator=gen)
    got, want = rotary(original)(q, k, cos, sin), original(q, k, cos, sin)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    qt, kt = q.transpose(1, 2), k.transpose(1, 2)  # [B, T, H, D] with unsqueeze_dim=2: the original's path
    other, plain = rotary(original)(qt, kt, cos, sin, 2), original(qt, kt, cos, sin, 2)
    assert all(torch.equal(a, b) for a, b in zip(other, plain, strict=True))


def test_fast_rotary_patches_and_restores_the_modeling_modules():
    original = modeling_llama.apply_rotary_pos_emb
    with fast_rotary(torch.device("cpu"), torch.float32, 64) as count:
        assert modeling_llama.apply_rotary_pos_emb is not original
    assert count == 4 and modeling_llama.apply_rotary_pos_emb is original

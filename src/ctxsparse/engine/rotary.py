"""Rotary embedding of the query and key of a decode step in one Triton kernel (about ten small kernels otherwise).

The families' apply_rotary_pos_emb computes q * cos + rotate_half(q) * sin (and the same for k), with
rotate_half(x) = (-x2, x1) for the two halves of the head dimension; in half precision each product and the
sum are rounded to the input dtype from float arithmetic. The kernel does the same operations with the same
roundings, one program per (row, position, head). While decode steps run, fast_rotary() replaces the function
in the supported families' modeling modules; inputs it does not cover (other dtypes or layouts) go to the
original function.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

import torch
import triton
import triton.language as tl

MODELING_MODULES = tuple(f"transformers.models.{f}.modeling_{f}" for f in ("llama", "mistral", "qwen2", "qwen3"))


@triton.jit
def _rotary_kernel(
    q_ptr, k_ptr, cos_ptr, sin_ptr, q_out_ptr, k_out_ptr,
    stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt, stride_cb, stride_ct, stride_sb, stride_st,
    num_q_heads, num_k_heads, seq,
    HALF: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    heads = num_q_heads + num_k_heads
    h = pid % heads
    t = (pid // heads) % seq
    b = (pid // heads // seq).to(tl.int64)
    offs = tl.arange(0, HALF)
    c1 = tl.load(cos_ptr + b * stride_cb + t * stride_ct + offs).to(tl.float32)
    c2 = tl.load(cos_ptr + b * stride_cb + t * stride_ct + HALF + offs).to(tl.float32)
    s1 = tl.load(sin_ptr + b * stride_sb + t * stride_st + offs).to(tl.float32)
    s2 = tl.load(sin_ptr + b * stride_sb + t * stride_st + HALF + offs).to(tl.float32)
    if h < num_q_heads:
        src = q_ptr + b * stride_qb + h * stride_qh + t * stride_qt
        dst = q_out_ptr + ((b * num_q_heads + h) * seq + t) * (2 * HALF)
    else:
        src = k_ptr + b * stride_kb + (h - num_q_heads) * stride_kh + t * stride_kt
        dst = k_out_ptr + ((b * num_k_heads + h - num_q_heads) * seq + t) * (2 * HALF)
    x1_in = tl.load(src + offs)
    x1 = x1_in.to(tl.float32)
    x2 = tl.load(src + HALF + offs).to(tl.float32)
    dt = x1_in.dtype
    # first half: x1 * cos1 + (-x2) * sin1; second half: x2 * cos2 + x1 * sin2; each product and sum rounded to dt
    lo = (x1 * c1).to(dt).to(tl.float32) + (-x2 * s1).to(dt).to(tl.float32)
    hi = (x2 * c2).to(dt).to(tl.float32) + (x1 * s2).to(dt).to(tl.float32)
    tl.store(dst + offs, lo.to(dt))
    tl.store(dst + HALF + offs, hi.to(dt))


def _covered(q, k, cos, sin, unsqueeze_dim) -> bool:
    if unsqueeze_dim != 1 or q.dim() != 4 or k.dim() != 4 or cos.dim() != 3 or cos.shape != sin.shape:
        return False
    bsz, _, seq, d = q.shape
    same = q.dtype == k.dtype == cos.dtype == sin.dtype and q.device == k.device == cos.device
    shapes = k.shape[0] == bsz and k.shape[2:] == (seq, d) and cos.shape[0] in (1, bsz) and cos.shape[1:] == (seq, d)
    inner = all(t.stride(-1) == 1 for t in (q, k, cos, sin))
    return same and shapes and inner and d % 2 == 0 and d & (d - 1) == 0


def rotary(original):
    """apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1) in one kernel where covered, else `original`."""

    def apply(q, k, cos, sin, unsqueeze_dim=1):
        if not _covered(q, k, cos, sin, unsqueeze_dim):
            return original(q, k, cos, sin, unsqueeze_dim)
        bsz, hq, seq, d = q.shape
        hk = k.shape[1]
        q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)
        cb = cos.stride(0) if cos.shape[0] == bsz else 0
        sb = sin.stride(0) if sin.shape[0] == bsz else 0
        _rotary_kernel[(bsz * seq * (hq + hk),)](
            q, k, cos, sin, q_out, k_out,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            cb, cos.stride(1), sb, sin.stride(1), hq, hk, seq, HALF=d // 2, num_warps=1,
        )  # fmt: skip
        return q_out, k_out

    return apply


_CHECKED: dict[tuple, bool] = {}


def _agrees(original, device: torch.device, dtype: torch.dtype, head_dim: int) -> bool:
    key = (original, str(device), dtype, head_dim)
    if key not in _CHECKED:
        _CHECKED[key] = kernel_agrees(original, device, dtype, head_dim)
    return _CHECKED[key]


def kernel_agrees(original, device: torch.device, dtype: torch.dtype, head_dim: int) -> bool:
    """A small probe of the kernel against `original` (within one rounding step): False when it fails to build or
    disagrees on this device, so a step never depends on an unchecked kernel."""
    try:
        gen = torch.Generator().manual_seed(0)
        q, k = (torch.randn(2, h, 1, head_dim, generator=gen).to(device, dtype) for h in (4, 2))
        cos, sin = (torch.randn(2, 1, head_dim, generator=gen).to(device, dtype) for _ in range(2))
        with torch.no_grad():
            got, want = rotary(original)(q, k, cos, sin), original(q, k, cos, sin)
        return all(torch.allclose(a.float(), b.float(), rtol=2**-6, atol=2**-5) for a, b in zip(got, want, strict=True))
    except Exception:  # a kernel that cannot build here: the original function stays
        return False


@contextlib.contextmanager
def fast_rotary(device: torch.device, dtype: torch.dtype, head_dim: int) -> Iterator[int]:
    """Route the supported families' apply_rotary_pos_emb through the one-kernel form inside the block (yields
    how many modules; none when a probe on this device, dtype and head_dim disagrees with the original)."""
    saved = []
    try:
        for name in MODELING_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:  # a transformers without this family: nothing of it to route
                continue
            original = getattr(module, "apply_rotary_pos_emb", None)
            if original is None or not _agrees(original, device, dtype, head_dim):
                continue
            saved.append((module, original))
            module.apply_rotary_pos_emb = rotary(original)
        yield len(saved)
    finally:
        for module, original in saved:
            module.apply_rotary_pos_emb = original

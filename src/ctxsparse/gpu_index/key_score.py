"""Exact q.K scores of every cached token on the GPU (the oracle's indexer), one row per kv head.

For each (row b, kv head h) the kernel reads the head's keys straight from the cache ([B, N, Hkv, D] with
any strides, such as the engine's paged cache seen row by row), forms the GQA group's logits
s_g = scale * q_g . k for each query head g in one tensor-core dot per tile, and reduces them over the
group by sum (which ranks like the mean) or max, or keeps one row per query head ('none', for selectors that
choose per query head, such as vAttention's). Like the label and page kernels it can mask tokens past
each row's length (-inf) and add each row's coarse-bin counts into the top-k's histogram, so the top-k
neither masks nor re-reads the scores. It reads every key once: half the bytes of dense attention.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ctxsparse.gpu_index.keys import add_counts, coarse_bin
from ctxsparse.gpu_index.launch import INTERPRETED, num_sms, split_rows

AGGREGATES = ("sum", "max", "none")
KEY_BLOCK = 64  # keys per tile: 64 x 128 bf16 = 16 KB
PER_SM = 4


@triton.jit
def _key_score_kernel(
    q_ptr, k_ptr, score_ptr, hist_ptr, len_ptr,
    stride_qb, stride_qh, stride_kb, stride_kn, stride_kh, stride_s,
    num_kv_heads, length, chunk, scale, len_add,
    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,
    AGG_MAX: tl.constexpr, PER_HEAD: tl.constexpr, COUNT: tl.constexpr, HAS_LEN: tl.constexpr,
    UPCAST: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)  # b * Hkv + kv head
    lo = tl.program_id(1) * chunk
    hi = tl.minimum(lo + chunk, length)
    b = (row // num_kv_heads).to(tl.int64)
    h = row % num_kv_heads
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, HEAD_DIM)
    g_mask = offs_g < GROUP
    # the group's queries [BLOCK_G, D]; rows past GROUP are zero (padding up to the dot's smallest tile)
    q = tl.load(q_ptr + b * stride_qb + (h * GROUP + offs_g)[:, None] * stride_qh + offs_d[None, :],
                mask=g_mask[:, None], other=0.0)  # fmt: skip
    if UPCAST:
        q = q.to(tl.float32)
    k_base = k_ptr + b * stride_kb + h * stride_kh
    score_row = score_ptr + row.to(tl.int64) * stride_s
    if PER_HEAD:  # the group's query heads own GROUP consecutive rows: b * Hq + h * GROUP + g
        score_row = score_ptr + (row.to(tl.int64) * GROUP + offs_g[:, None]) * stride_s
    visible = length
    if HAS_LEN:  # tokens past the row's length (len_ptr[b] + len_add) score -inf
        visible = tl.load(len_ptr + b) + len_add
    hist = tl.zeros([256], tl.int32)
    for start in range(lo, hi, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        n_mask = offs_n < hi
        keys = tl.load(k_base + offs_n[:, None].to(tl.int64) * stride_kn + offs_d[None, :], mask=n_mask[:, None],
                       other=0.0)  # fmt: skip
        if UPCAST:
            keys = keys.to(tl.float32)
        s = tl.dot(q, tl.trans(keys)) * scale  # [BLOCK_G, BLOCK_N]: every head of the group against each key
        if PER_HEAD:
            if HAS_LEN:
                s = tl.where(offs_n[None, :] < visible, s, float("-inf"))
            tl.store(score_row + offs_n[None, :], s.to(score_ptr.dtype.element_ty),
                     mask=g_mask[:, None] & n_mask[None, :])  # fmt: skip
        else:
            if AGG_MAX:
                agg = tl.max(tl.where(g_mask[:, None], s, float("-inf")), axis=0)
            else:
                agg = tl.sum(s, axis=0)  # padded rows are zero
            if HAS_LEN:
                agg = tl.where(offs_n < visible, agg, float("-inf"))
            agg = agg.to(score_ptr.dtype.element_ty)
            tl.store(score_row + offs_n, agg, mask=n_mask)
            if COUNT:
                hist = add_counts(hist, coarse_bin(agg), n_mask)
    if COUNT:
        tl.atomic_add(hist_ptr + row * 256 + tl.arange(0, 256), hist, mask=hist > 0, sem="relaxed")


def launch_key_scores(q, keys, out, hist, scale: float, aggregate: str, lengths=None, length_add: int = 0) -> None:
    """Launch on checked inputs: q [B, Hq, D]; keys [B, N, Hkv, D] (D contiguous); out [B * Hkv, N] float16/32
    receives the scores ([B * Hq, N] for aggregate 'none'), hist (int32 [B * Hkv, 256], or None; always None for
    'none') their coarse-bin counts; lengths (int32 [>= B], or None): row b's tokens from lengths[b] + length_add
    on score -inf."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"key scores: aggregate must be one of {AGGREGATES}; got {aggregate!r}.")
    if aggregate == "none" and hist is not None:
        raise ValueError("key scores: per-head scores ('none') are not counted; pass hist=None and count them apart.")
    bsz, hq, d = q.shape
    n, hkv = keys.shape[1], keys.shape[2]
    if keys.shape[0] < bsz or keys.shape[3] != d or hq % hkv or q.stride(-1) != 1 or keys.stride(-1) != 1:
        raise ValueError(f"key scores: keys {tuple(keys.shape)} do not fit q {tuple(q.shape)} (need [>= B, N, Hkv, "
                         "D] with D contiguous, query heads a multiple of kv heads).")  # fmt: skip
    rows = bsz * hkv
    group = hq // hkv
    parts, chunk = split_rows(rows, n, KEY_BLOCK, num_sms(q.device), PER_SM)
    _key_score_kernel[(rows, parts)](
        q, keys, out, out if hist is None else hist, out if lengths is None else lengths,
        q.stride(0), q.stride(1), keys.stride(0), keys.stride(1), keys.stride(2), out.stride(0),
        hkv, n, chunk, scale, length_add,
        GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)), BLOCK_N=KEY_BLOCK, HEAD_DIM=d,
        AGG_MAX=aggregate == "max", PER_HEAD=aggregate == "none", COUNT=hist is not None, HAS_LEN=lengths is not None,
        UPCAST=INTERPRETED and q.dtype == torch.bfloat16, num_warps=4,
    )  # fmt: skip

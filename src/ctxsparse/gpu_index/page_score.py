"""Quest page scoring on the GPU: an upper bound of q.k over each page of keys, one row per kv head.

With the elementwise minimum m and maximum M of the keys in a page (per kv head, [B, Hkv, P, D] each),
every key k of the page satisfies q.k <= sum_c max(q_c m_c, q_c M_c) = q+.M + q-.m, where q+ = max(q, 0)
and q- = min(q, 0). A GQA group's query heads share one row, aggregated by
  sum: sum_g of the bounds = (sum_g q_g+).M + (sum_g q_g-).m (one pass over the page, as for one head), or
  max: max_g of the bounds (one pass per query head).
Reading the bounds costs 2 x D values per page of page_size keys: 1/8 of the K bytes at page_size 16.
Like label scoring, the kernel can add each row's coarse-bin counts into the top-k histogram.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ctxsparse.gpu_index.keys import add_counts, check_score_out, coarse_bin
from ctxsparse.gpu_index.launch import check_device, num_sms, split_rows

AGGREGATES = ("sum", "max")
PAGE_BLOCK = 32  # pages per tile: 32 x 128 bf16 bounds, min and max = 16 KB
# tl.range software pipelining depth and programs per SM, from an H100 sweep (benchmarks/sweep_indexers.py):
# within its noise (+-10%), so no pipelining, as for the label kernel
STAGES = 1
PER_SM = 16


@triton.jit
def _page_score_kernel(
    q_ptr, min_ptr, max_ptr, score_ptr, hist_ptr, len_ptr,
    stride_qb, stride_qh, stride_mb, stride_mh, stride_mp, stride_xb, stride_xh, stride_xp, stride_s,
    num_kv_heads, num_pages, chunk, scale, len_add,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_P: tl.constexpr,
    AGG_MAX: tl.constexpr, COUNT: tl.constexpr, HAS_LEN: tl.constexpr, PAGE_SIZE: tl.constexpr,
    STAGES: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)  # b * Hkv + kv head
    lo = tl.program_id(1) * chunk
    hi = tl.minimum(lo + chunk, num_pages)
    b = (row // num_kv_heads).to(tl.int64)
    h = row % num_kv_heads
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    q_base = q_ptr + b * stride_qb + (h * GROUP) * stride_qh
    # The group's summed positive and negative parts: sum_g bound_g = Q+.M + Q-.m
    q_pos = tl.zeros([BLOCK_D], tl.float32)
    q_neg = tl.zeros([BLOCK_D], tl.float32)
    for g in tl.static_range(GROUP):
        q_g = tl.load(q_base + g * stride_qh + offs_d, mask=d_mask, other=0.0).to(tl.float32) * scale
        q_pos += tl.maximum(q_g, 0.0)
        q_neg += tl.minimum(q_g, 0.0)
    min_base = min_ptr + b * stride_mb + h * stride_mh
    max_base = max_ptr + b * stride_xb + h * stride_xh
    score_row = score_ptr + row.to(tl.int64) * stride_s
    visible = num_pages
    if HAS_LEN:  # pages wholly past the row's length (len_ptr[b] + len_add tokens) score -inf
        visible = (tl.load(len_ptr + b) + len_add + PAGE_SIZE - 1) // PAGE_SIZE
    hist = tl.zeros([256], tl.int32)
    for start in tl.range(lo, hi, BLOCK_P, num_stages=STAGES):
        offs_p = start + tl.arange(0, BLOCK_P)
        p_mask = offs_p < hi
        tile_mask = p_mask[:, None] & d_mask[None, :]
        lo_t = tl.load(min_base + offs_p[:, None] * stride_mp + offs_d[None, :], mask=tile_mask, other=0.0)
        hi_t = tl.load(max_base + offs_p[:, None] * stride_xp + offs_d[None, :], mask=tile_mask, other=0.0)
        lo_t = lo_t.to(tl.float32)
        hi_t = hi_t.to(tl.float32)
        if AGG_MAX:
            s = tl.full([BLOCK_P], float("-inf"), tl.float32)
            for g in tl.static_range(GROUP):
                q_g = tl.load(q_base + g * stride_qh + offs_d, mask=d_mask, other=0.0).to(tl.float32) * scale
                bound = tl.maximum(q_g[None, :] * lo_t, q_g[None, :] * hi_t)  # max(q_c m_c, q_c M_c)
                s = tl.maximum(s, tl.sum(bound, axis=1))
        else:
            s = tl.sum(q_pos[None, :] * hi_t + q_neg[None, :] * lo_t, axis=1)
        if HAS_LEN:
            s = tl.where(offs_p < visible, s, float("-inf"))
        s = s.to(score_ptr.dtype.element_ty)
        tl.store(score_row + offs_p, s, mask=p_mask)
        if COUNT:
            hist = add_counts(hist, coarse_bin(s), p_mask)
    if COUNT:
        tl.atomic_add(hist_ptr + row * 256 + tl.arange(0, 256), hist, mask=hist > 0, sem="relaxed")


def check_bounds(q: torch.Tensor, page_min: torch.Tensor, page_max: torch.Tensor) -> tuple[int, int, int]:
    """(B, Hkv, P) after host-side checks of q [B, Hq, D] and page bounds [B, Hkv, P, D]."""
    if q.dim() != 3 or page_min.dim() != 4 or tuple(page_min.shape) != tuple(page_max.shape):
        raise ValueError(f"page_scores: q must be [B, Hq, D] and page_min/page_max alike [B, Hkv, P, D]; got "
                         f"{tuple(q.shape)}, {tuple(page_min.shape)}, {tuple(page_max.shape)}.")  # fmt: skip
    bsz, hq, d = q.shape
    _, hkv, pages, d_pages = page_min.shape
    if page_min.shape[0] != bsz or d_pages != d or hq % hkv:
        raise ValueError(f"page_scores: page bounds {tuple(page_min.shape)} do not fit q {tuple(q.shape)} "
                         "(same batch and head_dim; query heads a multiple of kv heads).")  # fmt: skip
    if not all(t.is_floating_point() for t in (q, page_min, page_max)):
        raise TypeError("page_scores: q and the page bounds must be floating point.")
    if any(t.stride(-1) != 1 for t in (q, page_min, page_max)):
        raise ValueError("page_scores: q and the page bounds need a contiguous last dim.")
    return bsz, hkv, pages


def launch_page_scores(q, page_min, page_max, out, hist, scale: float, aggregate: str, lengths=None,
                       length_add: int = 0, page_size: int = 1) -> None:  # fmt: skip
    """Launch on checked inputs: out [B * Hkv, P] (float16/32) receives the bounds; hist (or None) the counts.
    lengths (int32 [>= B], or None): row b's pages past its lengths[b] + length_add tokens (pages of page_size)
    score -inf."""
    bsz, hq, d = q.shape
    hkv, pages = page_min.shape[1], page_min.shape[2]
    rows = bsz * hkv
    parts, chunk = split_rows(rows, pages, PAGE_BLOCK, num_sms(q.device), PER_SM)
    _page_score_kernel[(rows, parts)](
        q, page_min, page_max, out, out if hist is None else hist, out if lengths is None else lengths,
        q.stride(0), q.stride(1), *page_min.stride()[:3], *page_max.stride()[:3], out.stride(0),
        hkv, pages, chunk, scale, length_add,
        GROUP=hq // hkv, HEAD_DIM=d, BLOCK_D=triton.next_power_of_2(d), BLOCK_P=PAGE_BLOCK,
        AGG_MAX=aggregate == "max", COUNT=hist is not None, HAS_LEN=lengths is not None,
        PAGE_SIZE=page_size, STAGES=STAGES, num_warps=4,
    )  # fmt: skip


def page_scores(
    q: torch.Tensor,
    page_min: torch.Tensor,
    page_max: torch.Tensor,
    *,
    scale: float | None = None,
    aggregate: str = "sum",
    out: torch.Tensor | None = None,
    hist: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scaled upper bounds [B, Hkv, P] of the logits in every page for each GQA group (float32 unless `out` says).

    q [B, Hq, D]; page_min / page_max [B, Hkv, P, D] (last dim contiguous); scale defaults to D^-0.5.
    out [B, Hkv, P] float32 or float16 (contiguous); hist int32 [B * Hkv, 256] gains coarse-bin counts.
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"page_scores: aggregate must be one of {AGGREGATES}; got {aggregate!r}.")
    bsz, hkv, pages = check_bounds(q, page_min, page_max)
    if out is None:
        out = torch.empty(bsz, hkv, pages, dtype=torch.float32, device=q.device)
    check_score_out("page_scores", out, (bsz, hkv, pages), hist)
    check_device("page_scores", q, page_min, page_max, out, *([] if hist is None else [hist]))
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    launch_page_scores(q, page_min, page_max, out.view(bsz * hkv, pages), hist, scale, aggregate)
    return out


def page_bounds_from_keys(keys: torch.Tensor, page_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) [B, Hkv, ceil(N / page_size), D] of a [B, Hkv, N, D] cache, in its dtype; a partial last page
    is bounded by its written keys alone (a one-shot prefill build; decode updates the last page only)."""
    bsz, hkv, n, d = keys.shape
    pages = math.ceil(n / page_size)
    pad = pages * page_size - n
    lo = F.pad(keys, (0, 0, 0, pad), value=math.inf).view(bsz, hkv, pages, page_size, d).amin(3)
    hi = F.pad(keys, (0, 0, 0, pad), value=-math.inf).view(bsz, hkv, pages, page_size, d).amax(3)
    return lo.contiguous(), hi.contiguous()

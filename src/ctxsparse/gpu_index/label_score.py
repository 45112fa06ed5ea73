"""Double Sparsity label scoring on the GPU: approximate q.k from r of the D key channels, one row per kv head.

The label cache [B, Hkv, N, r] holds, head-major, the r calibrated channels of every cached key of each
kv head (r = 16 of D = 128: 1/8 of the K bytes). The approximate logit of token n for query head g is
scale * sum_c q_g[ch_c] * label[n, c]; a GQA group's query heads share one row, aggregated by
  sum: sum_g (the group-summed query dotted with the label; one r-long dot per token), or
  max: max_g (one dot per query head).
The kernel writes the row of scores (float16 or float32) and, for the fused top-k, adds each row's
coarse-bin counts into a histogram, so the top-k never rereads the scores to count them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ctxsparse.gpu_index.keys import add_counts, check_score_out, coarse_bin
from ctxsparse.gpu_index.launch import check_device, num_sms, split_rows

AGGREGATES = ("sum", "max")
LABEL_BLOCK = 512  # tokens per tile: 512 x 16 bf16 labels = 16 KB
MAX_CHANNELS = 32  # label channels are read 8 at a time, in at most 4 loads per token
# tl.range software pipelining depth and programs per SM, from an H100 sweep (benchmarks/sweep_indexers.py):
# pipelining through shared memory made this kernel 40% slower; 4 programs per SM was best by a few %
STAGES = 1
PER_SM = 4


@triton.jit
def _label_chunk(lab_base, stride_ln, offs_n, n_mask, c: tl.constexpr, R: tl.constexpr):
    """Labels [BLOCK_N, 8] of channels 8c .. 8c + 7, fp32. Eight bf16 are one 16-byte load, so a token's
    chunk sits in one thread and the dot below needs no shuffles (a full 16-channel row would span two)."""
    offs_c = c * 8 + tl.arange(0, 8)
    mask = n_mask[:, None] & (offs_c < R)[None, :]
    return tl.load(lab_base + offs_n[:, None] * stride_ln + offs_c[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _query_chunk(q_base, stride_qh, chan_ptr, scale, c: tl.constexpr, R: tl.constexpr, G0: tl.constexpr,
                 GN: tl.constexpr):  # fmt: skip
    """scale * sum over query heads G0 .. G0 + GN - 1 of q_g[channels 8c .. 8c + 7], fp32 [8]."""
    offs_c = c * 8 + tl.arange(0, 8)
    c_mask = offs_c < R
    chan = tl.load(chan_ptr + offs_c, mask=c_mask, other=0)
    q = tl.zeros([8], tl.float32)
    for g in tl.static_range(G0, G0 + GN):
        q += tl.load(q_base + g * stride_qh + chan, mask=c_mask, other=0.0).to(tl.float32)
    return q * scale


@triton.jit
def _dot(l0, l1, l2, l3, q0, q1, q2, q3, R: tl.constexpr):
    """sum_c q_c label_c of each token, over the chunks that R says exist."""
    s = tl.sum(l0 * q0[None, :], axis=1)
    if R > 8:
        s += tl.sum(l1 * q1[None, :], axis=1)
    if R > 16:
        s += tl.sum(l2 * q2[None, :], axis=1)
    if R > 24:
        s += tl.sum(l3 * q3[None, :], axis=1)
    return s


@triton.jit
def _label_score_kernel(
    q_ptr, lab_ptr, chan_ptr, score_ptr, hist_ptr, len_ptr,
    stride_qb, stride_qh, stride_lb, stride_lh, stride_ln, stride_ch, stride_s,
    num_kv_heads, length, chunk, scale, len_add,
    GROUP: tl.constexpr, R: tl.constexpr, BLOCK_N: tl.constexpr, AGG_MAX: tl.constexpr, COUNT: tl.constexpr,
    HAS_LEN: tl.constexpr, STAGES: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)  # b * Hkv + kv head
    lo = tl.program_id(1) * chunk
    hi = tl.minimum(lo + chunk, length)
    b = (row // num_kv_heads).to(tl.int64)
    h = row % num_kv_heads
    chan_row = chan_ptr + h * stride_ch
    q_base = q_ptr + b * stride_qb + (h * GROUP) * stride_qh
    lab_base = lab_ptr + b * stride_lb + h * stride_lh
    score_row = score_ptr + row.to(tl.int64) * stride_s
    # sum_g q_g . l = (sum_g q_g) . l: the group's summed query, chunk by chunk, loaded once
    q0 = _query_chunk(q_base, stride_qh, chan_row, scale, 0, R, 0, GROUP)
    q1 = q0
    q2 = q0
    q3 = q0
    if R > 8:
        q1 = _query_chunk(q_base, stride_qh, chan_row, scale, 1, R, 0, GROUP)
    if R > 16:
        q2 = _query_chunk(q_base, stride_qh, chan_row, scale, 2, R, 0, GROUP)
    if R > 24:
        q3 = _query_chunk(q_base, stride_qh, chan_row, scale, 3, R, 0, GROUP)
    visible = length
    if HAS_LEN:  # tokens past the row's length (len_ptr[b] + len_add) score -inf: never chosen before a valid one
        visible = tl.load(len_ptr + b) + len_add
    hist = tl.zeros([256], tl.int32)
    for start in tl.range(lo, hi, BLOCK_N, num_stages=STAGES):
        offs_n = start + tl.arange(0, BLOCK_N)
        n_mask = offs_n < hi
        l0 = _label_chunk(lab_base, stride_ln, offs_n, n_mask, 0, R)
        # chunks past R stay placeholders (l0), never read
        l1 = l0
        l2 = l0
        l3 = l0
        if R > 8:
            l1 = _label_chunk(lab_base, stride_ln, offs_n, n_mask, 1, R)
        if R > 16:
            l2 = _label_chunk(lab_base, stride_ln, offs_n, n_mask, 2, R)
        if R > 24:
            l3 = _label_chunk(lab_base, stride_ln, offs_n, n_mask, 3, R)
        if AGG_MAX:  # max_g of each head's approximate logit (the head's query chunks come from cache)
            s = tl.full([BLOCK_N], float("-inf"), tl.float32)
            for g in tl.static_range(GROUP):
                g0 = _query_chunk(q_base, stride_qh, chan_row, scale, 0, R, g, 1)
                g1 = g0
                g2 = g0
                g3 = g0
                if R > 8:
                    g1 = _query_chunk(q_base, stride_qh, chan_row, scale, 1, R, g, 1)
                if R > 16:
                    g2 = _query_chunk(q_base, stride_qh, chan_row, scale, 2, R, g, 1)
                if R > 24:
                    g3 = _query_chunk(q_base, stride_qh, chan_row, scale, 3, R, g, 1)
                s = tl.maximum(s, _dot(l0, l1, l2, l3, g0, g1, g2, g3, R))
        else:
            s = _dot(l0, l1, l2, l3, q0, q1, q2, q3, R)
        if HAS_LEN:
            s = tl.where(offs_n < visible, s, float("-inf"))
        s = s.to(score_ptr.dtype.element_ty)
        tl.store(score_row + offs_n, s, mask=n_mask)
        if COUNT:
            hist = add_counts(hist, coarse_bin(s), n_mask)
    if COUNT:
        tl.atomic_add(hist_ptr + row * 256 + tl.arange(0, 256), hist, mask=hist > 0, sem="relaxed")


def check_labels(q: torch.Tensor, labels: torch.Tensor, channels: torch.Tensor) -> tuple[int, int, int]:
    """(B, Hkv, N) after host-side checks of q [B, Hq, D], labels [B, Hkv, N, r], channels [Hkv, r]."""
    if q.dim() != 3 or labels.dim() != 4:
        raise ValueError(f"label_scores: q must be [B, Hq, D] and labels [B, Hkv, N, r]; got "
                         f"{tuple(q.shape)} and {tuple(labels.shape)}.")  # fmt: skip
    bsz, hq, d = q.shape
    _, hkv, n, r = labels.shape
    if labels.shape[0] != bsz or hq % hkv:
        raise ValueError(f"label_scores: labels {tuple(labels.shape)} do not fit q {tuple(q.shape)} "
                         "(same batch; query heads a multiple of kv heads).")  # fmt: skip
    if tuple(channels.shape) != (hkv, r) or channels.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"label_scores: channels must be int [Hkv={hkv}, r={r}]; got {channels.dtype} "
                         f"{tuple(channels.shape)}.")  # fmt: skip
    if not 1 <= r <= min(d, MAX_CHANNELS):
        raise ValueError(f"label_scores: r = {r} label channels; the kernel takes 1 to min(head_dim, "
                         f"{MAX_CHANNELS}) = {min(d, MAX_CHANNELS)}.")  # fmt: skip
    if not (q.is_floating_point() and labels.is_floating_point()):
        raise TypeError(f"label_scores: q and labels must be floating point; got {q.dtype}, {labels.dtype}.")
    if q.stride(-1) != 1 or labels.stride(-1) != 1 or not channels.is_contiguous():
        raise ValueError("label_scores: q and labels need a contiguous last dim, channels a contiguous tensor.")
    return bsz, hkv, n


def launch_label_scores(q, labels, channels, out, hist, scale: float, aggregate: str, lengths=None,
                        length_add: int = 0) -> None:  # fmt: skip
    """Launch on checked inputs: out [B * Hkv, N] (float16/32) receives the scores; hist (or None) the counts.
    lengths (int32 [>= B], or None): row b's tokens from lengths[b] + length_add on score -inf."""
    bsz, hq, _ = q.shape
    hkv, n, r = labels.shape[1], labels.shape[2], labels.shape[3]
    rows = bsz * hkv
    parts, chunk = split_rows(rows, n, LABEL_BLOCK, num_sms(q.device), PER_SM)
    _label_score_kernel[(rows, parts)](
        q, labels, channels, out, out if hist is None else hist, out if lengths is None else lengths,
        q.stride(0), q.stride(1), labels.stride(0), labels.stride(1), labels.stride(2), channels.stride(0),
        out.stride(0), hkv, n, chunk, scale, length_add,
        GROUP=hq // hkv, R=r, BLOCK_N=LABEL_BLOCK, AGG_MAX=aggregate == "max", COUNT=hist is not None,
        HAS_LEN=lengths is not None, STAGES=STAGES, num_warps=4,
    )  # fmt: skip


def label_scores(
    q: torch.Tensor,
    labels: torch.Tensor,
    channels: torch.Tensor,
    *,
    scale: float | None = None,
    aggregate: str = "sum",
    out: torch.Tensor | None = None,
    hist: torch.Tensor | None = None,
) -> torch.Tensor:
    """Approximate logits [B, Hkv, N] of every cached token for each GQA group (float32 unless `out` says).

    q [B, Hq, D]; labels [B, Hkv, N, r] (any float dtype, last dim contiguous); channels [Hkv, r] int:
    label[..., c] holds key channel channels[h, c]. scale defaults to D^-0.5. out [B, Hkv, N] float32 or
    float16 (rows contiguous); hist int32 [B * Hkv, 256], when given, gains each row's coarse-bin counts.
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"label_scores: aggregate must be one of {AGGREGATES}; got {aggregate!r}.")
    bsz, hkv, n = check_labels(q, labels, channels)
    if out is None:
        out = torch.empty(bsz, hkv, n, dtype=torch.float32, device=q.device)
    check_score_out("label_scores", out, (bsz, hkv, n), hist)
    check_device("label_scores", q, labels, channels, out, *([] if hist is None else [hist]))
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    launch_label_scores(q, labels, channels, out.view(bsz * hkv, n), hist, scale, aggregate)
    return out


def label_cache_from_keys(keys: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """Labels [B, Hkv, N, r] = keys[b, h, n, channels[h, c]] of a [B, Hkv, N, D] cache (a one-shot prefill build;
    a decode loop appends the new token's labels instead)."""
    bsz, hkv, n, _ = keys.shape
    index = channels.long().to(keys.device).view(1, hkv, 1, -1).expand(bsz, hkv, n, -1)
    return keys.gather(-1, index).contiguous()

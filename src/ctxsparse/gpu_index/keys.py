"""Order-preserving integer keys of scores, and their 256 coarse bins: the radix digits of the top-k.

A float's bit pattern orders like the float once negatives have their magnitude bits flipped, so the
top-k can count and compare integers. The coarse bin of a score is the top byte of the key of its
float16 rounding (sign, 5 exponent bits, 2 mantissa bits: quarter-octave buckets). Rounding to float16
never reverses an order (it may merge neighbours, and saturates to +-inf), so a higher bin always means
a larger or equal score, whatever the score's own dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

NUM_BINS = 256  # coarse bins per row: one byte of the key
KEY_DTYPES = (torch.float32, torch.float16)


@triton.jit
def ordered_key(x):
    """int32 key whose signed order is x's order: fp16 -> [-2^15, 2^15), fp32 -> all of int32.

    bits ^ (sign ? 0x7F..F : 0): a negative float's magnitude bits grow with |x|, so flipping them makes
    a more negative float a smaller integer; -0.0 sits just below +0.0.
    """
    if x.dtype == tl.float16:
        bits = x.to(tl.int16, bitcast=True).to(tl.int32)  # sign-extended
        key = bits ^ ((bits >> 15) & 0x7FFF)
    else:
        bits = x.to(tl.int32, bitcast=True)
        key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return key


@triton.jit
def coarse_bin(x):
    """Bin in [0, 256) of each score: the top byte of ordered_key(float16(x)), shifted to be unsigned."""
    return (ordered_key(x.to(tl.float16)) >> 8) + 128


@triton.jit
def add_counts(hist, bins, valid):
    """hist [256] plus the count of each bin among the valid lanes.

    Invalid lanes are counted in bin 0 and taken back out: tl.histogram has no mask on every Triton.
    """
    counts = tl.histogram(tl.where(valid, bins, 0), 256)
    dropped = tl.sum((valid == 0).to(tl.int32), axis=0)
    return hist + counts - tl.where(tl.arange(0, 256) == 0, dropped, 0)


@triton.jit
def threshold_bin(hist, need):
    """(b, above): b = the highest bin with count(bins >= b) >= need, above = count(bins > b).

    ge[b] = sum_{j >= b} hist[j] = total - cumsum[b] + hist[b]; b = -1 when even all of hist is short.
    """
    bins = tl.arange(0, 256)
    ge = tl.sum(hist, axis=0) - tl.cumsum(hist, 0) + hist
    b = tl.max(tl.where(ge >= need, bins, -1), axis=0)
    above = tl.sum(tl.where(bins > b, hist, 0), axis=0)
    return b, above


def check_scores(name: str, scores: torch.Tensor) -> None:
    """Host-side check of a score matrix [rows, length]: float32 or float16, contiguous rows."""
    if scores.dim() != 2:
        raise ValueError(f"{name}: scores must be [rows, length]; got shape {tuple(scores.shape)}.")
    if scores.dtype not in KEY_DTYPES:
        raise TypeError(f"{name}: scores must be float32 or float16; got {scores.dtype} (convert with .float()).")
    if scores.stride(1) != 1:
        raise ValueError(f"{name}: score rows must be contiguous (stride 1); call .contiguous().")


def check_score_out(name: str, out: torch.Tensor, shape: tuple[int, ...], hist: torch.Tensor | None) -> None:
    """Host-side check of an indexer's score buffer (contiguous float32/float16 `shape`) and its histogram."""
    if tuple(out.shape) != shape or out.dtype not in KEY_DTYPES or not out.is_contiguous():
        raise ValueError(f"{name}: out must be contiguous float32/float16 {list(shape)}; got {out.dtype} "
                         f"{tuple(out.shape)}.")  # fmt: skip
    rows = shape[0] * shape[1]
    if hist is not None and (tuple(hist.shape) != (rows, NUM_BINS) or hist.dtype != torch.int32):
        raise ValueError(f"{name}: hist must be int32 [{rows}, {NUM_BINS}]; got {hist.dtype} {tuple(hist.shape)}.")

"""Exact row-wise top-k for long score rows (k/N from 1/2 to 1/100, N up to 128K), capturable in a CUDA graph.

torch.topk sorts its way to the k-th value; a radix select only counts. Three steps, all on the device:
  1. count: a 256-bin histogram of each row's coarse bins (keys.coarse_bin). The indexer kernels count
     while they write their scores, so the pipeline never reads the scores for this step.
  2. filter (rows x parts programs): each program re-derives its row's threshold bin b* from the
     histogram; scores above b* are certainly selected and go straight to the output, scores in b* are
     candidates and go to a side list (values and indices). Each tile reserves its slots in both lists
     with one 64-bit atomic add and places its items by one packed prefix sum.
  3. resolve: find the k-th largest key T among the candidates by radix select, one byte per pass (the
     filter counts the first byte as it lists them; fp16 keys need no other pass, their top byte being
     b*, so several programs share a row; fp32 keys take three passes over the list in one program).
     Candidates above T fill the output upwards from the filter's, the `need` ties at T fill it
     downwards from slot k - 1: the two meet exactly.
The result is a set: indices come out in no particular order. Buffers are allocated by plan(); every
call zeroes the counts first (one memset) and then only launches kernels.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ctxsparse.gpu_index.keys import NUM_BINS, add_counts, check_scores, coarse_bin, ordered_key, threshold_bin
from ctxsparse.gpu_index.launch import check_device, num_sms, split_rows

COUNT_BLOCK = 2048  # scores per tile in the count and filter kernels
RESOLVE_BLOCK = 1024  # candidates per tile in the resolve kernel
RESOLVE_PARTS = 8  # resolve programs per row for float16 keys
# tl.range software pipelining (tiles in flight) and programs per SM: an H100 sweep of the filter found
# no gain from pipelining, the label kernel lost 40% with it (benchmarks/NOTES-pipeline.md)
STAGES = 1
FILTER_STAGES = 1
FILTER_PER_SM = 4


@triton.jit
def _count_kernel(scores_ptr, hist_ptr, stride_s, length, chunk, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    row = tl.program_id(0)
    lo = tl.program_id(1) * chunk
    hi = tl.minimum(lo + chunk, length)
    hist = tl.zeros([256], tl.int32)
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        offs = start + tl.arange(0, BLOCK)
        valid = offs < hi
        x = tl.load(scores_ptr + row.to(tl.int64) * stride_s + offs, mask=valid, other=0.0)
        hist = add_counts(hist, coarse_bin(x), valid)
    tl.atomic_add(hist_ptr + row * 256 + tl.arange(0, 256), hist, mask=hist > 0, sem="relaxed")


@triton.jit
def _first_digit(x, KEY_BITS: tl.constexpr):
    """The exact key's byte that the first resolve pass counts: the low byte of a float16 key (its top
    byte is the coarse bin), or the top byte of a float32 key made unsigned."""
    if KEY_BITS == 16:
        d = x.to(tl.int16, bitcast=True).to(tl.int32)
        d = (d ^ ((d >> 15) & 0x7FFF)) & 255
    else:
        d = x.to(tl.int32, bitcast=True)
        d = (((d ^ ((d >> 31) & 0x7FFFFFFF)) >> 24) & 255) ^ 128
    return d


@triton.jit
def _filter_kernel(
    scores_ptr, hist_ptr, count_ptr, digit_ptr, out_ptr, cand_val_ptr, cand_idx_ptr,
    stride_s, stride_o, stride_c, length, chunk, k,
    KEY_BITS: tl.constexpr, BLOCK: tl.constexpr, STAGES: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    lo = tl.program_id(1) * chunk
    hi = tl.minimum(lo + chunk, length)
    b_star, _ = threshold_bin(tl.load(hist_ptr + row * 256 + tl.arange(0, 256)), k)
    row64 = row.to(tl.int64)
    ROWS: tl.constexpr = BLOCK // 8
    for start in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        # the tile as [BLOCK / 8, 8]: prefix sums run along the 8 items a thread holds, then over the rows
        offs = start + tl.arange(0, ROWS)[:, None] * 8 + tl.arange(0, 8)[None, :]
        valid = offs < hi
        x = tl.load(scores_ptr + row64 * stride_s + offs, mask=valid, other=0.0)
        bins = coarse_bin(x)
        take = valid & (bins > b_star)
        cand = valid & (bins == b_star)
        # One prefix sum for both lists: take counts in the low 16 bits, candidates in the high 16.
        packed = take.to(tl.int32) + (cand.to(tl.int32) << 16)
        row_sums = tl.sum(packed, axis=1)
        incl = tl.cumsum(packed, 1) + (tl.cumsum(row_sums, 0) - row_sums)[:, None]
        total = tl.sum(row_sums, axis=0)
        # One 64-bit atomic reserves the tile's slots in both lists: (taken, candidates) as (low, high) words.
        packed_total = (total & 0xFFFF).to(tl.int64) + ((total >> 16).to(tl.int64) << 32)
        base = tl.atomic_add(count_ptr + row * 2, packed_total, sem="relaxed")
        pos = base.to(tl.int32) + (incl & 0xFFFF) - 1  # base.to(int32): the low word
        tl.store(out_ptr + row64 * stride_o + pos, offs, mask=take & (pos < k))  # pos < k: if select() runs twice
        pos = (base >> 32).to(tl.int32) + (incl >> 16) - 1
        tl.store(cand_val_ptr + row64 * stride_c + pos, x, mask=cand)  # keys are made in resolve
        tl.store(cand_idx_ptr + row64 * stride_c + pos, offs, mask=cand)
        # The resolve step's first counting pass, done here: one relaxed atomic per candidate.
        tl.atomic_add(digit_ptr + row * 256 + _first_digit(x, KEY_BITS), 1, mask=cand, sem="relaxed")


@triton.jit
def _digit_counts(vals_row, n_cand, target, SHIFT: tl.constexpr, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    """Counts [256] of the byte at SHIFT of the exact keys of the candidates whose bits above that byte
    equal `target`."""
    hist = tl.zeros([256], tl.int32)
    for start in tl.range(0, n_cand, BLOCK, num_stages=STAGES):
        offs = start + tl.arange(0, BLOCK)
        key = ordered_key(tl.load(vals_row + offs, mask=offs < n_cand, other=0.0))
        valid = (offs < n_cand) & ((key >> (SHIFT + 8)) == target)
        hist = add_counts(hist, (key >> SHIFT) & 255, valid)
    return hist


@triton.jit
def _resolve_kernel(
    hist_ptr, count_ptr, digit_ptr, out_ptr, cand_val_ptr, cand_idx_ptr, stride_o, stride_c, k, parts,
    KEY_BITS: tl.constexpr, BLOCK: tl.constexpr, STAGES: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    row64 = row.to(tl.int64)
    counts = tl.load(count_ptr + row * 2)
    above = counts.to(tl.int32)  # the low word: taken by the filter
    n_cand = (counts >> 32).to(tl.int32)
    vals_row = cand_val_ptr + row64 * stride_c
    # Radix select on the candidates' exact keys, one byte per pass, top byte first; the filter already
    # counted the first byte. `target` holds the key bits fixed so far: (key >> (shift + 8)) == target.
    d, above_d = threshold_bin(tl.load(digit_ptr + row * 256 + tl.arange(0, 256)), k - above)
    need = k - above - above_d  # candidates still to take, among those whose first byte is d
    if KEY_BITS == 16:
        b_star, _ = threshold_bin(tl.load(hist_ptr + row * 256 + tl.arange(0, 256)), k)
        target = (b_star - 128) * 256 + d  # top byte: the coarse bin b* (as a signed byte); low byte: d
    else:
        target = d - 128  # the top byte, signed again
        for p in tl.static_range(3):
            hist = _digit_counts(vals_row, n_cand, target, 16 - 8 * p, BLOCK, STAGES)
            d, above_d = threshold_bin(hist, need)
            need -= above_d
            target = target * 256 + d
    # target is now the k-th largest key T, and `need` ties at T complete the k: keys above T fill slots
    # above, above + 1, ...; ties fill k - 1, k - 2, ... while their rank (1-based) is at most need.
    ROWS: tl.constexpr = BLOCK // 8
    for start in tl.range(tl.program_id(1) * BLOCK, n_cand, parts * BLOCK, num_stages=STAGES):
        offs = start + tl.arange(0, ROWS)[:, None] * 8 + tl.arange(0, 8)[None, :]
        valid = offs < n_cand
        key = ordered_key(tl.load(vals_row + offs, mask=valid, other=0.0))
        idx = tl.load(cand_idx_ptr + row64 * stride_c + offs, mask=valid, other=0)
        gt = valid & (key > target)
        eq = valid & (key == target)
        # as in the filter: one packed prefix sum (above T low, ties high) and one 64-bit atomic per tile
        packed = gt.to(tl.int32) + (eq.to(tl.int32) << 16)
        row_sums = tl.sum(packed, axis=1)
        incl = tl.cumsum(packed, 1) + (tl.cumsum(row_sums, 0) - row_sums)[:, None]
        total = tl.sum(row_sums, axis=0)
        packed_total = (total & 0xFFFF).to(tl.int64) + ((total >> 16).to(tl.int64) << 32)
        base = tl.atomic_add(count_ptr + row * 2 + 1, packed_total, sem="relaxed")
        pos = above + base.to(tl.int32) + (incl & 0xFFFF) - 1
        tl.store(out_ptr + row64 * stride_o + pos, idx, mask=gt & (pos < k))
        rank = (base >> 32).to(tl.int32) + (incl >> 16)
        tl.store(out_ptr + row64 * stride_o + k - rank, idx, mask=eq & (rank <= need))


class RowTopK:
    """Top-k indices of every row of a [rows, length] score matrix: plan() once per shape, run() per call.

    out: int32 [rows, k], the selected column indices of each row in no particular order (a set; of the
    scores tied at the k-th value any may be taken, and the choice may differ between calls). The count
    step can be fused into the kernel that writes the scores (it then calls reset(), adds into `hist`, and
    calls select() instead of run()); select() consumes one call's counts.
    """

    def __init__(self) -> None:
        self.rows = self.length = self.k = 0

    def plan(self, rows: int, length: int, k: int, dtype: torch.dtype, device: torch.device | str) -> None:
        """Allocate the output, the histogram, the counters and the candidate lists for this shape."""
        if rows < 1 or length < 1:
            raise ValueError(f"RowTopK: rows and length must be positive; got {rows} x {length}.")
        if not 1 <= k <= length:
            raise ValueError(f"RowTopK: k must lie in [1, length={length}]; got {k}.")
        if dtype not in (torch.float32, torch.float16):
            raise TypeError(f"RowTopK: scores must be float32 or float16; got {dtype}.")
        device = torch.device(device)
        self.rows, self.length, self.k, self.dtype, self.device = rows, length, k, dtype, device
        self.out = torch.empty(rows, k, dtype=torch.int32, device=device)
        # One buffer, zeroed by one memset per call: the coarse-bin histogram, the candidates' first-byte
        # counts, and two int64 counters per row, each two packed words: (taken by the filter, candidates)
        # and (above T, ties at T) placed by the resolve step.
        self.state = torch.zeros(rows * (2 * NUM_BINS + 4), dtype=torch.int32, device=device)
        self.hist = self.state[: rows * NUM_BINS].view(rows, NUM_BINS)
        self.digits = self.state[rows * NUM_BINS : 2 * rows * NUM_BINS].view(rows, NUM_BINS)
        self.counts = self.state[2 * rows * NUM_BINS :].view(torch.int64).view(rows, 2)
        self.cand_val = torch.empty(rows, length, dtype=dtype, device=device)
        self.cand_idx = torch.empty(rows, length, dtype=torch.int32, device=device)

    def _check(self, scores: torch.Tensor) -> None:
        if not self.k:
            raise RuntimeError("RowTopK: call plan() before run().")
        check_scores("RowTopK", scores)
        if tuple(scores.shape) != (self.rows, self.length) or scores.dtype != self.dtype:
            raise ValueError(
                f"RowTopK: planned for {self.dtype} [{self.rows}, {self.length}]; got {scores.dtype} "
                f"{tuple(scores.shape)}."
            )
        check_device("RowTopK", scores, self.out)

    def reset(self) -> None:
        """Zero the histograms and counters: before the counts of a call (the indexers call it for theirs)."""
        self.state.zero_()

    def count(self, scores: torch.Tensor) -> None:
        """Step 1 alone: zero the state, then count each row's coarse bins into self.hist."""
        self._check(scores)
        self.reset()
        parts, chunk = split_rows(self.rows, self.length, COUNT_BLOCK, num_sms(self.device))
        _count_kernel[(self.rows, parts)](
            scores, self.hist, scores.stride(0), self.length, chunk, BLOCK=COUNT_BLOCK, STAGES=STAGES, num_warps=4
        )

    def select(self, scores: torch.Tensor) -> torch.Tensor:
        """Steps 2 and 3, once self.hist holds this call's counts (count() or a fused indexer); returns self.out."""
        self._check(scores)
        key_bits = 16 if self.dtype == torch.float16 else 32
        parts, chunk = split_rows(self.rows, self.length, COUNT_BLOCK, num_sms(self.device), FILTER_PER_SM)
        _filter_kernel[(self.rows, parts)](
            scores, self.hist, self.counts, self.digits, self.out, self.cand_val, self.cand_idx,
            scores.stride(0), self.out.stride(0), self.cand_val.stride(0), self.length, chunk, self.k,
            KEY_BITS=key_bits, BLOCK=COUNT_BLOCK, STAGES=FILTER_STAGES, num_warps=4,
        )  # fmt: skip
        parts = RESOLVE_PARTS if key_bits == 16 else 1  # fp32 radix passes need the whole list in one program
        _resolve_kernel[(self.rows, parts)](
            self.hist, self.counts, self.digits, self.out, self.cand_val, self.cand_idx,
            self.out.stride(0), self.cand_val.stride(0), self.k, parts,
            KEY_BITS=key_bits, BLOCK=RESOLVE_BLOCK, STAGES=STAGES, num_warps=4,
        )  # fmt: skip
        return self.out

    def run(self, scores: torch.Tensor) -> torch.Tensor:
        """All three steps: int32 [rows, k] indices of each row's k largest scores (self.out)."""
        self.count(scores)
        return self.select(scores)


def topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """One-shot top-k: int32 [rows, k] column indices of each row's k largest scores, unordered.

    Plans on every call (allocations); keep a RowTopK for repeated calls or CUDA graphs.
    """
    check_scores("topk_indices", scores)
    topk = RowTopK()
    topk.plan(scores.shape[0], scores.shape[1], k, scores.dtype, scores.device)
    return topk.run(scores).clone()

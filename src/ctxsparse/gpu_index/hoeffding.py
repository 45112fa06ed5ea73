"""vAttention's per-row steps as two Triton kernels: the Hoeffding split, and the assembly of the read list.

split: one program per (row, query head) reads its top logits (sorted, highest first) and its sink/window
logits, and computes for every t = 0..T the deterministic mass A_t, the residual's largest term X_t, the
residual size M_t, the sample size n_t and the bound epsilon_t, then picks how many top tokens to keep and how
many samples to draw, exactly as selectors.vattention.split_budget does with some sixty tensor operations.
assemble: one program per row writes its k slots: sink and window, the kept top tokens, the samples (weighted
M / n) and weight-0 padding.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl


@triton.jit
def _split_kernel(
    top_ptr, sw_ptr, count_ptr, rest_ptr, residual_ptr, keep_ptr, draw_ptr,
    stride_t, stride_s, T, S, spread, epsilon, min_samples,
    BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    t = tl.arange(0, BLOCK_T)  # candidate numbers of kept top tokens, 0..T
    top = tl.load(top_ptr + row * stride_t + t, mask=t < T, other=float("-inf"))
    prev = tl.load(top_ptr + row * stride_t + t - 1, mask=(t >= 1) & (t <= T), other=float("-inf"))
    s = tl.arange(0, BLOCK_S)
    sw = tl.load(sw_ptr + row * stride_s + s, mask=s < S, other=float("-inf"))
    m = tl.maximum(tl.max(top, 0), tl.max(sw, 0))
    m = tl.where(m == float("-inf"), 0.0, m)
    terms = tl.exp(top - m)  # 0 on invalid slots, which come last
    a = tl.sum(tl.exp(sw - m), 0) + tl.cumsum(tl.exp(prev - m), 0)  # A_t: sink/window plus the t best
    smallest = tl.min(tl.where(terms > 0, terms, float("inf")), 0)
    smallest = tl.where(smallest == float("inf"), 0.0, smallest)
    x = tl.maximum(terms, smallest)  # X_t: the residual's largest term (sorted, so the t-th top term)
    count = tl.load(count_ptr + row).to(tl.float32)
    rest = tl.load(rest_ptr + row).to(tl.float32)
    residual0 = tl.load(residual_ptr + row).to(tl.float32)
    tf = t.to(tl.float32)
    size = residual0 + count - tf  # M_t
    samples = tl.minimum(rest - tf, size)  # n_t
    rho = tl.where(a > 0, size * x / tl.maximum(a, 1e-38), float("inf"))
    eps = rho * spread / tl.sqrt(tl.maximum(samples, 1.0))
    eps = tl.where(samples >= size, 0.0, tl.where(samples <= 0, float("inf"), eps))
    possible = (tf <= count) & (t <= T)
    enough = samples >= tl.minimum(size, min_samples)
    feasible = possible & enough & (eps <= epsilon)
    eps = tl.where(possible, eps, float("inf"))
    best = (eps == tl.min(eps, 0)) & possible
    any_feasible = tl.max(feasible.to(tl.int32), 0)
    keep = tl.where(any_feasible > 0, tl.max(tl.where(feasible, t, 0), 0), tl.max(tl.where(best, t, 0), 0))
    draw = tl.sum(tl.where(t == keep, samples, 0.0), 0)
    tl.store(keep_ptr + row, keep.to(tl.int64))
    tl.store(draw_ptr + row, tl.maximum(draw, 0.0).to(tl.int64))


@triton.jit
def _assemble_kernel(
    sw_tok_ptr, sw_w_ptr, top_ptr, drawn_ptr, keep_ptr, draw_ptr, size_ptr, tok_ptr, weight_ptr,
    S, T, K, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    keep = tl.load(keep_ptr + row)
    draw = tl.load(draw_ptr + row)
    weight = tl.maximum(tl.load(size_ptr + row).to(tl.float32) / tl.maximum(draw, 1).to(tl.float32), 1.0)
    for start in range(0, K, BLOCK):
        j = start + tl.arange(0, BLOCK)
        in_sw = j < S
        i = j - S  # slot in the top/sample part
        kept = (i >= 0) & (i < keep)
        drawn = (i >= keep) & (i - keep < draw) & (i < T)
        sw_tok = tl.load(sw_tok_ptr + row * S + j, mask=in_sw, other=0)
        sw_w = tl.load(sw_w_ptr + row * S + j, mask=in_sw, other=0.0)
        top = tl.load(top_ptr + row * T + i, mask=kept, other=0)
        smp = tl.load(drawn_ptr + row * T + i - keep, mask=drawn, other=0)
        tok = tl.where(in_sw, sw_tok, tl.where(kept, top, smp))
        w = tl.where(in_sw, sw_w, tl.where(kept, 1.0, tl.where(drawn, weight, 0.0)))
        tl.store(tok_ptr + row * K + j, tok.to(tl.int32), mask=j < K)
        tl.store(weight_ptr + row * K + j, w, mask=j < K)


def launch_split(top_sorted: torch.Tensor, sw_logits: torch.Tensor, count: torch.Tensor, rest: torch.Tensor,
                 residual0: torch.Tensor, keep: torch.Tensor, draw: torch.Tensor, epsilon: float, delta: float,
                 min_samples: int) -> None:  # fmt: skip
    """top_sorted [R, T] and sw_logits [R, S] float32 (rows contiguous, -inf where invalid); count, rest, residual0
    int64 [R] (valid top slots, budget past sink and window, residual size outside both); writes keep and draw
    (int64 [R])."""
    rows, top_slots = top_sorted.shape
    _split_kernel[(rows,)](
        top_sorted, sw_logits, count, rest, residual0, keep, draw,
        top_sorted.stride(0), sw_logits.stride(0), top_slots, sw_logits.shape[1],
        math.sqrt(math.log(2.0 / delta) / 2.0), epsilon, float(min_samples),
        BLOCK_T=triton.next_power_of_2(top_slots + 1), BLOCK_S=max(16, triton.next_power_of_2(sw_logits.shape[1])),
        num_warps=4,
    )  # fmt: skip


def launch_assemble(sw_tokens: torch.Tensor, sw_weights: torch.Tensor, top_sorted: torch.Tensor,
                    drawn_sorted: torch.Tensor, keep: torch.Tensor, draw: torch.Tensor, size: torch.Tensor,
                    tokens: torch.Tensor, weights: torch.Tensor) -> None:  # fmt: skip
    """Write tokens (int32 [R, S + T]) and weights (float32 [R, S + T]): sink/window tokens and their weights (1, or
    0 where invalid) [R, S], then the kept top tokens, then the samples weighted size / draw. Token inputs are
    contiguous int64 [R, S] or [R, T]; keep, draw and size (the residual after the kept top) int64 [R]."""
    rows, k = tokens.shape
    _assemble_kernel[(rows,)](
        sw_tokens, sw_weights, top_sorted, drawn_sorted, keep, draw, size, tokens, weights,
        sw_tokens.shape[1], top_sorted.shape[1], k, BLOCK=min(1024, triton.next_power_of_2(k)), num_warps=4,
    )  # fmt: skip

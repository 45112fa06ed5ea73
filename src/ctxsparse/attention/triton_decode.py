"""Triton sparse decode: split-K over each row's selected tokens, then a log-sum-exp merge of the splits.

One program per (batch, selection head, split) loads every selected K/V row of its slice once and scores
it against all query heads that share the selection (a GQA group for kv-head selections), so the bytes
moved are the selected rows themselves. A second, tiny kernel merges the per-split partial softmax
states. The split count depends only on shapes and on the compiled kernel's occupancy (read once per
variant), never on device data, so a call never synchronizes with the host and can be captured in a
CUDA graph. Validation lives in sparse_decode.py; this module assumes checked inputs.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from ctxsparse.attention.decode_launch import DecodeLaunch, _raw_stream, compiled_launcher, launch_mode, scratch_for
from ctxsparse.attention.split_plan import DecodeConfig, default_config, plan_splits, resident_programs
from ctxsparse.attention.triton_launch import bind_direct

LOG2E = 1.4426950408889634  # exp(x) = exp2(x * log2(e))


@triton.jit
def _split_kernel(
    q_ptr, k_ptr, v_ptr, idx_ptr, len_ptr, w_ptr, pt_ptr,
    out_ptr, lse_ptr, part_m_ptr, part_l_ptr, part_acc_ptr,
    stride_qb, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_ib, stride_ih, stride_ik,
    stride_lb, stride_lh,
    stride_wb, stride_wh, stride_wk,
    stride_ptb, stride_ptp,
    stride_ob, stride_oh,
    num_sel_heads, num_q_heads, kv_group, num_slots, chunk, num_splits, qk_scale,
    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,
    PAGED: tl.constexpr, PAGE_SIZE: tl.constexpr, HAS_LEN: tl.constexpr, HAS_W: tl.constexpr,
    SINGLE_SPLIT: tl.constexpr, RETURN_LSE: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    if PDL:  # let the merge kernel be scheduled early; it waits for this grid's results before reading
        tl.extra.cuda.gdc_launch_dependents()
    row = tl.program_id(0)  # b * num_sel_heads + selection head
    split = tl.program_id(1)
    b = row // num_sel_heads
    h_sel = row % num_sel_heads
    q_head0 = h_sel * GROUP  # the GROUP query heads that read this selection start here
    kv_head = q_head0 // kv_group  # ...and all of them belong to this kv head

    valid_len = num_slots
    if HAS_LEN:
        valid_len = tl.minimum(tl.maximum(tl.load(len_ptr + b * stride_lb + h_sel * stride_lh), 0), num_slots)
    lo = split * chunk
    hi = tl.minimum(lo + chunk, valid_len)

    offs_g = tl.arange(0, BLOCK_G)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    g_mask = offs_g < GROUP
    b64 = b.to(tl.int64)
    q = tl.load(
        q_ptr + b64 * stride_qb + (q_head0 + offs_g)[:, None] * stride_qh + offs_d[None, :],
        mask=g_mask[:, None],
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
    if PAGED:
        k_base = k_ptr + kv_head * stride_kh
        v_base = v_ptr + kv_head * stride_vh
    else:
        k_base = k_ptr + b64 * stride_kb + kv_head * stride_kh
        v_base = v_ptr + b64 * stride_vb + kv_head * stride_vh
    idx_row = idx_ptr + b64 * stride_ib + h_sel * stride_ih
    w_row = w_ptr + b64 * stride_wb + h_sel * stride_wh

    # Online softmax in base 2: s_j = scale * log2(e) * q.k_j (+ log2 w_j), m = running max,
    # l = sum_j 2^(s_j - m), acc = sum_j 2^(s_j - m) v_j; both rescaled by 2^(m_old - m_new) as m grows.
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
    for start in range(lo, hi, BLOCK_N):
        slots = start + offs_n
        valid = slots < hi
        tok = tl.load(idx_row + slots * stride_ik, mask=valid, other=0).to(tl.int64)
        if PAGED:
            # token n of batch b lives in page page_table[b, n // PAGE_SIZE], slot n % PAGE_SIZE
            page = tl.load(pt_ptr + b64 * stride_ptb + (tok // PAGE_SIZE) * stride_ptp, mask=valid, other=0)
            page = page.to(tl.int64)
            k_off = page * stride_kb + (tok % PAGE_SIZE) * stride_kn
            v_off = page * stride_vb + (tok % PAGE_SIZE) * stride_vn
        else:
            k_off = tok * stride_kn
            v_off = tok * stride_vn
        # Gathered [BLOCK_N, HEAD_DIM] tiles: each row is HEAD_DIM contiguous elements (16-byte vectors).
        k_tile = tl.load(k_base + k_off[:, None] + offs_d[None, :], mask=valid[:, None], other=0.0)
        v_tile = tl.load(v_base + v_off[:, None] + offs_d[None, :], mask=valid[:, None], other=0.0)
        if UPCAST:  # exact: bf16 -> fp32, and fp32 dots in IEEE mode
            k_tile = k_tile.to(tl.float32)
            v_tile = v_tile.to(tl.float32)
        # scores [BLOCK_G, BLOCK_N] in fp32: every query head of the group against each gathered row
        s = tl.dot(q, tl.trans(k_tile), input_precision=DOT_PRECISION) * qk_scale
        if HAS_W:
            # w_j multiplies exp(s_j): add log2(w_j); a weight <= 0 drops the token
            w = tl.load(w_row + slots * stride_wk, mask=valid, other=0.0).to(tl.float32)
            s = s + tl.where(w > 0, tl.log2(tl.where(w > 0, w, 1.0)), float("-inf"))[None, :]
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # nothing seen yet: 2^(-inf - 0) = 0, not NaN
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v_tile.dtype), v_tile, input_precision=DOT_PRECISION)
        m_i = m_new

    q_rows = b64 * num_q_heads + q_head0 + offs_g
    if SINGLE_SPLIT:
        # out = acc / l; lse = ln(sum_j e^(x_j)) = (m + log2 l) * ln 2; an empty row gives 0 and -inf
        l_safe = tl.where(l_i > 0, l_i, 1.0)  # l = 0 only where acc = 0
        o = acc / l_safe[:, None]
        o_ptrs = out_ptr + b64 * stride_ob + (q_head0 + offs_g)[:, None] * stride_oh + offs_d[None, :]
        tl.store(o_ptrs, o.to(out_ptr.dtype.element_ty), mask=g_mask[:, None])
        if RETURN_LSE:
            lse = tl.where(l_i > 0, (m_i + tl.log2(l_safe)) * 0.6931471805599453, float("-inf"))
            tl.store(lse_ptr + q_rows, lse, mask=g_mask)
    else:
        # The unnormalised partial state (m, l, acc) of this split; _merge_kernel combines them.
        part = q_rows * num_splits + split
        tl.store(part_m_ptr + part, m_i, mask=g_mask)
        tl.store(part_l_ptr + part, l_i, mask=g_mask)
        tl.store(part_acc_ptr + part[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=g_mask[:, None])


@triton.jit
def _merge_kernel(
    part_m_ptr, part_l_ptr, part_acc_ptr, out_ptr, lse_ptr,
    stride_ob, stride_oh, num_q_heads, num_splits,
    SPLITS: tl.constexpr, HEAD_DIM: tl.constexpr, RETURN_LSE: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    if PDL:  # launched early: wait until the split kernel's partial states are all written
        tl.extra.cuda.gdc_wait()
    q_row = tl.program_id(0)  # b * num_q_heads + query head
    b = q_row // num_q_heads
    h = q_row % num_q_heads
    offs_s = tl.arange(0, SPLITS)
    offs_d = tl.arange(0, HEAD_DIM)
    s_mask = offs_s < num_splits
    part = q_row.to(tl.int64) * num_splits + offs_s
    m = tl.load(part_m_ptr + part, mask=s_mask, other=float("-inf"))
    l_s = tl.load(part_l_ptr + part, mask=s_mask, other=0.0)
    acc = tl.load(part_acc_ptr + part[:, None] * HEAD_DIM + offs_d[None, :], mask=s_mask[:, None], other=0.0)
    # M = max_s m_s; split s weighs 2^(m_s - M): L = sum_s 2^(m_s - M) l_s, out = sum_s 2^(m_s - M) acc_s / L
    m_max = tl.max(m, axis=0)
    m_safe = tl.where(m_max == float("-inf"), 0.0, m_max)
    rescale = tl.exp2(m - m_safe)
    total = tl.sum(rescale * l_s, axis=0)
    total_safe = tl.where(total > 0, total, 1.0)  # total = 0 only where every acc_s = 0
    o = tl.sum(acc * rescale[:, None], axis=0) / total_safe
    tl.store(out_ptr + b.to(tl.int64) * stride_ob + h * stride_oh + offs_d, o.to(out_ptr.dtype.element_ty))
    if RETURN_LSE:
        lse = tl.where(total > 0, (m_safe + tl.log2(total_safe)) * 0.6931471805599453, float("-inf"))
        tl.store(lse_ptr + q_row, lse)


# Triton's CPU interpreter (TRITON_INTERPRET=1 when this module is imported) multiplies bf16 tiles wrongly
# in tl.dot; there the tiles go through fp32, which is exact for bf16 values.
INTERPRETED = isinstance(_split_kernel, InterpretedFunction)


_RESIDENT: dict[tuple, int | None] = {}


def triton_variant(values: tuple) -> tuple:
    """What Triton compiles a separate kernel variant for, per argument: a tensor's dtype and 16-byte
    alignment; an integer equal to 1, divisible by 16, or past 32 bits. Variants of one kernel can
    differ in registers and so in occupancy (k = 656 and k = 328 slots do, on an H100)."""
    return tuple(
        (v.dtype, v.data_ptr() % 16 == 0) if isinstance(v, torch.Tensor)
        else (v == 1, v % 16 == 0, not -(2**31) <= v < 2**31) if isinstance(v, int)
        else None
        for v in values
    )  # fmt: skip


def _resident_per_sm(key: tuple, device: torch.device, num_warps: int, compile_kernel) -> int | None:
    """Occupancy of a split-kernel variant, read once from its compiled form; None when unknown."""
    if key not in _RESIDENT:
        resident = None
        if device.type == "cuda" and not INTERPRETED:
            try:
                compiled = compile_kernel()
                compiled._init_handles()
                props = torch.cuda.get_device_properties(device)
                resident = resident_programs(compiled.n_regs, compiled.metadata.shared, num_warps, props)
            except Exception:  # an unexpected Triton API: plan from programs_per_sm instead
                resident = None
        _RESIDENT[key] = resident
    return _RESIDENT[key]


@functools.cache
def _has_pdl(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9


@functools.cache
def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 2  # Triton's CPU interpreter: two "SMs", so small tests still run several splits


def _constexprs(kernel, given: int, values: dict) -> tuple:
    """The values of kernel's parameters after the first `given`, in declaration order, from `values`."""
    return tuple(values[n] for n in kernel.arg_names[given:])


def plan_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    indices: torch.Tensor,
    lengths: torch.Tensor | None,
    weights: torch.Tensor | None,
    scale: float,
    page_table: torch.Tensor | None,
    return_lse: bool,
    config: DecodeConfig | None = None,
    out: torch.Tensor | None = None,
) -> DecodeLaunch:
    """Plan the split and merge kernels for checked inputs of this signature (shapes, strides, dtypes,
    alignment, which optional inputs are given): the returned DecodeLaunch serves every call that matches."""
    bsz, num_q_heads, head_dim = q.shape
    paged = page_table is not None
    num_kv_heads = k_cache.shape[2] if paged else k_cache.shape[1]
    num_sel_heads, num_slots = indices.shape[1], indices.shape[2]
    group = num_q_heads // num_sel_heads  # query heads per selection row: the GQA group, or 1
    config = config or default_config(head_dim)
    rows = bsz * num_sel_heads
    num_sms = _num_sms(q.device)
    splits, chunk = plan_splits(rows, num_slots, num_sms, config)

    if out is None:
        out = torch.empty(bsz, num_q_heads, head_dim, dtype=q.dtype, device=q.device)
    lse = torch.empty(bsz, num_q_heads, dtype=torch.float32, device=q.device) if return_lse else out
    if paged:
        # [pages, page_size, Hkv, D]: the kernel's "batch" stride is the page stride, "token" the slot stride
        ks = (k_cache.stride(0), k_cache.stride(1), k_cache.stride(2))
        vs = (v_cache.stride(0), v_cache.stride(1), v_cache.stride(2))
        page_size, pt, pt_strides = k_cache.shape[1], page_table, page_table.stride()
    else:
        ks = (k_cache.stride(0), k_cache.stride(2), k_cache.stride(1))
        vs = (v_cache.stride(0), v_cache.stride(2), v_cache.stride(1))
        page_size, pt, pt_strides = 1, indices, (0, 0)
    len_t, len_strides = (lengths, lengths.stride()) if lengths is not None else (indices, (0, 0))
    w_t, w_strides = (weights, weights.stride()) if weights is not None else (indices, (0, 0, 0))
    upcast = INTERPRETED and q.dtype == torch.bfloat16
    pdl_ok = config.pdl and _has_pdl(q.device)
    flags = dict(
        GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)), BLOCK_N=config.block_n,
        HEAD_DIM=head_dim, PAGED=paged, PAGE_SIZE=page_size, HAS_LEN=lengths is not None,
        HAS_W=weights is not None, RETURN_LSE=return_lse,
        UPCAST=upcast, DOT_PRECISION="ieee" if upcast else "tf32",
    )  # fmt: skip
    options = dict(num_warps=config.num_warps, num_stages=config.num_stages)

    def tensors(part_m, part_l, part_acc) -> tuple:
        return (q, k_cache, v_cache, indices, len_t, w_t, pt, out, lse, part_m, part_l, part_acc)

    def scalars(chunk: int, splits: int) -> tuple:
        return (
            q.stride(0), q.stride(1), *ks, *vs, *indices.stride(), *len_strides, *w_strides, *pt_strides,
            out.stride(0), out.stride(1),
            num_sel_heads, num_q_heads, num_q_heads // num_kv_heads, num_slots, chunk, splits, scale * LOG2E,
        )  # fmt: skip

    # Re-plan with the kernel's occupancy, read from its compiled form once per variant and device. The
    # key holds what Triton specialises on, so one shape's variant never sets another shape's plan.
    probe_args = tensors(out, out, out) + scalars(chunk, splits)
    key = (q.device, tuple(sorted((k, str(v)) for k, v in (flags | options).items())), triton_variant(probe_args))
    compile_kernel = lambda: _split_kernel.warmup(
        *probe_args, grid=(1,), SINGLE_SPLIT=False, PDL=pdl_ok, **flags, **options
    )
    resident = _resident_per_sm(key, q.device, config.num_warps, compile_kernel)
    if resident is not None:
        splits, chunk = plan_splits(rows, num_slots, num_sms, config, resident)
    pdl = pdl_ok and splits > 1

    scratch = -(-bsz * num_q_heads * splits // 4) * 4  # whole 16-byte groups: every view stays aligned
    work = torch.empty(scratch * (2 + head_dim) if splits > 1 else 0, dtype=torch.float32, device=q.device)
    parts = (work[:scratch], work[scratch : 2 * scratch], work[2 * scratch :]) if splits > 1 else (out, out, out)
    head = tensors(*parts)
    split_tail = scalars(chunk, splits)
    split_tail += _constexprs(
        _split_kernel, len(head) + len(split_tail), flags | {"SINGLE_SPLIT": splits == 1, "PDL": pdl}
    )
    mode = launch_mode(INTERPRETED)
    split_grid = (rows, splits)
    split_launch, split_compiled = compiled_launcher(_split_kernel, head + split_tail, split_grid, options, mode)
    merge_launch, merge_compiled, merge_head, merge_tail, merge_grid = None, None, (), (), (bsz * num_q_heads,)
    if splits > 1:
        merge_head = (*parts, out, lse)
        merge_tail = (out.stride(0), out.stride(1), num_q_heads, splits)
        merge_consts = dict(SPLITS=triton.next_power_of_2(splits), HEAD_DIM=head_dim, RETURN_LSE=return_lse, PDL=pdl)
        merge_tail += _constexprs(_merge_kernel, len(merge_head) + len(merge_tail), merge_consts)
        merge_options = {"num_warps": 4 if head_dim <= 128 else 8, **({"launch_pdl": True} if pdl else {})}
        merge_launch, merge_compiled = compiled_launcher(
            _merge_kernel, merge_head + merge_tail, merge_grid, merge_options, mode
        )
    direct = None
    if mode == "direct" and split_compiled is not None and (splits == 1 or merge_compiled is not None):
        stream = _raw_stream(q.device.index)
        split_direct = bind_direct(split_compiled, (rows, splits, 1), head + split_tail, stream)
        merge_direct = None
        if splits > 1:
            merge_direct = bind_direct(merge_compiled, (bsz * num_q_heads, 1, 1), merge_head + merge_tail, stream)
        if split_direct is not None and (splits == 1 or merge_direct is not None):
            direct = (split_direct, merge_direct)
    return DecodeLaunch(
        splits, chunk, (bsz, num_q_heads, head_dim), return_lse, scratch, head_dim, split_launch, split_tail,
        merge_launch, merge_tail, out_like_q=q.is_contiguous(), direct=direct,
        device_index=q.device.index if q.is_cuda else -1,
        stream_scratch=scratch_for(q.device) if direct is not None else None,
    )  # fmt: skip


def triton_sparse_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    indices: torch.Tensor,
    lengths: torch.Tensor | None,
    weights: torch.Tensor | None,
    scale: float,
    page_table: torch.Tensor | None,
    return_lse: bool,
    config: DecodeConfig | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Plan and launch the split and merge kernels on checked inputs (sparse_decode keeps the plans).

    q [B, Hq, D]; caches [B, Hkv, N, D] (any strides, D contiguous) or paged [pages, page_size, Hkv, D]
    with page_table [B, max_pages]; indices [B, H, k] with H = Hkv or Hq; lengths [B, H]; weights [B, H, k].
    `out` [B, Hq, D] (D contiguous) is written in place when given.
    """
    launch = plan_decode(q, k_cache, v_cache, indices, lengths, weights, scale, page_table, return_lse, config, out)
    return launch(q, k_cache, v_cache, indices, lengths, weights, page_table, out)

"""sparse_decode against the torch reference: the Triton kernel, interpreted on CPU and compiled on CUDA.

On a machine without CUDA, Triton's interpreter runs the kernels on tiny shapes (TRITON_INTERPRET is set
here, before triton is imported). With CUDA (or CTXSPARSE_FULL_SIZE=1) the same cases run at full size,
plus the GPU-only promises: no host synchronisation, CUDA-graph capture, FlashInfer agreement.
"""

from __future__ import annotations

import importlib
import math
import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
FULL = CUDA or os.environ.get("CTXSPARSE_FULL_SIZE", "0") == "1"
DEVICE = "cuda" if CUDA else "cpu"

pytest.importorskip("triton")
kernel = importlib.import_module("ctxsparse.attention.triton_decode")
if not CUDA and not kernel.INTERPRETED:  # imported earlier without the interpreter: decorate again
    kernel = importlib.reload(kernel)

from ctxsparse.attention import sparse_attention_reference, sparse_decode  # noqa: E402
from ctxsparse.selection import Selection  # noqa: E402

sparse_decode_module = importlib.import_module("ctxsparse.attention.sparse_decode")

# ||out - ref|| / ||ref|| against the fp32 reference on the same (rounded) inputs.
REL_TOL = {torch.bfloat16: 1.5e-2, torch.float16: 3e-3}
LSE_TOL = 2e-3
# (batch, query heads, kv heads, cache positions, selected slots)
SHAPE = (4, 32, 8, 8192, 700) if FULL else (2, 4, 2, 160, 100)
PAGE_SIZE = 16 if FULL else 4


def _gen(seed: int) -> torch.Generator:
    return torch.Generator(device=DEVICE).manual_seed(seed)


def make_case(seed, dtype, head_dim, per_query_head, ragged, weighted, shape=SHAPE):
    """Random q, cache, selection (unsorted, with duplicates; ragged rows include an empty and a full one)."""
    bsz, hq, hkv, n, k = shape
    g = _gen(seed)
    heads = hq if per_query_head else hkv
    q = torch.randn(bsz, hq, head_dim, generator=g, device=DEVICE).to(dtype)
    keys = torch.randn(bsz, hkv, n, head_dim, generator=g, device=DEVICE).to(dtype)
    values = torch.randn(bsz, hkv, n, head_dim, generator=g, device=DEVICE).to(dtype)
    idx = torch.randint(0, n, (bsz, heads, k), generator=g, device=DEVICE, dtype=torch.int32)
    idx[..., 1] = idx[..., 0]  # a duplicate in every row
    lengths = weights = None
    if ragged:
        lengths = torch.randint(1, k + 1, (bsz, heads), generator=g, device=DEVICE, dtype=torch.int32)
        lengths[0, 0], lengths[-1, -1] = 0, k
    if weighted:
        weights = 2 * torch.rand(bsz, heads, k, generator=g, device=DEVICE)
        weights[..., 2] = 0.0  # a zero weight drops its token
    return q, keys, values, idx, lengths, weights


def to_pages(cache: torch.Tensor, page_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, Hkv, N, D] -> (pages [P, page_size, Hkv, D] in shuffled order, page_table [B, N / page_size])."""
    bsz, hkv, n, d = cache.shape
    per_seq = math.ceil(n / page_size)
    padded = torch.nn.functional.pad(cache, (0, 0, 0, per_seq * page_size - n))
    blocks = padded.view(bsz, hkv, per_seq, page_size, d).permute(0, 2, 3, 1, 4).reshape(-1, page_size, hkv, d)
    order = torch.randperm(bsz * per_seq + 3, generator=_gen(seed), device=cache.device)  # 3 spare pages
    pages = torch.randn(bsz * per_seq + 3, page_size, hkv, d, device=cache.device).to(cache.dtype)
    pages[order[: bsz * per_seq]] = blocks
    return pages, order[: bsz * per_seq].view(bsz, per_seq).to(torch.int32)


def reference(q, keys, values, idx, lengths, weights, scale=None):
    sel = Selection(idx[:, :, None], None if lengths is None else lengths[:, :, None],
                    None if weights is None else weights[:, :, None])  # fmt: skip
    out, lse = sparse_attention_reference(
        q[:, :, None].float(), keys.float(), values.float(), sel, scale=scale, return_lse=True
    )
    return out[:, :, 0], lse[:, :, 0]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref).norm() / ref.norm())


def check_lse(lse: torch.Tensor, ref_lse: torch.Tensor) -> None:
    empty = torch.isinf(ref_lse)
    assert torch.equal(torch.isinf(lse), empty) and bool((lse[empty] < 0).all())
    assert float((lse[~empty] - ref_lse[~empty]).abs().max()) < LSE_TOL


# (dtype, head_dim, per query head, paged, ragged, weighted): every head_dim, both granularities,
# both cache layouts, lengths and weights, each at least once; small enough for the interpreter.
CASES = [
    (torch.bfloat16, 64, False, False, True, False),
    (torch.float16, 128, False, True, True, True),
    (torch.bfloat16, 128, True, False, False, True),
    (torch.bfloat16, 256, True, True, True, False),
    (torch.float16, 256, False, False, True, True),
    (torch.bfloat16, 64, True, True, False, False),
]


@pytest.mark.parametrize("dtype,head_dim,per_query_head,paged,ragged,weighted", CASES)
def test_triton_matches_reference(dtype, head_dim, per_query_head, paged, ragged, weighted):
    seed = 100 * head_dim + 8 * per_query_head + 4 * paged + 2 * ragged + weighted
    q, keys, values, idx, lengths, weights = make_case(seed, dtype, head_dim, per_query_head, ragged, weighted)
    ref, ref_lse = reference(q, keys, values, idx, lengths, weights)
    out = torch.full_like(q, float("nan"))  # poisoned: every element must be written
    if paged:
        k_pages, table = to_pages(keys, PAGE_SIZE, seed)
        v_pages, _ = to_pages(values, PAGE_SIZE, seed)
        k_in, v_in, page_table = k_pages, v_pages, table
    else:
        k_in, v_in, page_table = keys, values, None
    selection = Selection(idx[:, :, None], None if lengths is None else lengths[:, :, None],
                          None if weights is None else weights[:, :, None])  # fmt: skip
    res, lse = sparse_decode(
        q, k_in, v_in, selection, page_table=page_table, backend="triton", return_lse=True, out=out
    )
    assert res.data_ptr() == out.data_ptr() and not torch.isnan(res).any()
    assert rel_err(res, ref) < REL_TOL[dtype]
    check_lse(lse, ref_lse)
    if ragged:
        assert bool((res[0, : q.shape[1] // idx.shape[1]] == 0).all())  # the empty row: zeros


@pytest.mark.parametrize("block_n,programs_per_sm", [(16, 1), (16, 4)])
def test_long_loops_and_single_split(block_n, programs_per_sm):
    """Explicit configurations: one split looping over every tile, and several splits of several tiles."""
    q, keys, values, idx, lengths, weights = make_case(23, torch.float16, 64, False, True, True)
    ref, ref_lse = reference(q, keys, values, idx, lengths, weights)
    config = kernel.DecodeConfig(block_n=block_n, programs_per_sm=programs_per_sm)
    out, lse = kernel.triton_sparse_decode(
        q, keys, values, idx, lengths, weights, 64**-0.5, None, True, config, out=torch.full_like(q, float("nan"))
    )
    assert rel_err(out, ref) < REL_TOL[torch.float16]
    check_lse(lse, ref_lse)


def test_strided_cache_and_bare_index_tensor():
    """A [B, Hkv, N, D] view of token-major storage, indices as a bare int64 tensor with keywords."""
    q, keys, values, idx, lengths, weights = make_case(7, torch.bfloat16, 64, False, True, True)
    keys_nhd, values_nhd = keys.transpose(1, 2).contiguous(), values.transpose(1, 2).contiguous()
    out = sparse_decode(q, keys_nhd.transpose(1, 2), values_nhd.transpose(1, 2), idx.long(),
                        lengths=lengths, weights=weights, backend="triton")  # fmt: skip
    ref, _ = reference(q, keys, values, idx, lengths, weights)
    assert rel_err(out, ref) < REL_TOL[torch.bfloat16]


def test_split_plan_fills_the_gpu_and_covers_every_slot():
    cfg = kernel.DecodeConfig(block_n=64)
    for rows, k in [(8, 2622), (64, 13108), (256, 1311), (8, 10), (1, 64 * 200)]:
        for resident in (None, 5):
            splits, chunk = kernel.plan_splits(rows, k, 132, cfg, resident)
            assert chunk % 64 == 0 and (splits - 1) * chunk < k <= splits * chunk  # no empty split, all covered
            assert splits <= cfg.max_splits
        splits, _ = kernel.plan_splits(rows, k, 132, cfg)
        # whole tiles per split may round the split count down, never below half of what was asked
        assert 2 * rows * splits >= min(cfg.programs_per_sm * 132, rows * math.ceil(k / 64), rows * cfg.max_splits)


def test_split_plan_fills_whole_waves():
    """With 5 programs per SM resident (132 SMs: waves of 660), the grid ends just under a whole wave."""
    cfg = kernel.DecodeConfig(block_n=32)
    assert kernel.plan_splits(64, 13108, 132, cfg, 5) == (10, 41 * 32)  # 640 programs: one wave
    assert kernel.plan_splits(256, 6554, 132, cfg, 5) == (5, 41 * 32)  # 1280 programs: two waves
    assert kernel.plan_splits(8, 2622, 132, cfg, 5)[0] == 41  # few rows: as many splits as tiles allow
    for rows, k in [(64, 2622), (64, 1311), (256, 13108), (256, 656), (24, 5000)]:
        splits, chunk = kernel.plan_splits(rows, k, 132, cfg, 5)
        # brute force: no other split count gives fewer waves x (tiles per split + prologue)
        costs = [math.ceil(rows * s / 660) * (math.ceil(math.ceil(k / 32) / s) + 0.5) for s in range(1, 65)]
        assert costs[splits - 1] == min(costs) and chunk == 32 * math.ceil(k / 32 / splits)


def test_resident_programs_from_kernel_resources():
    class H100:
        regs_per_multiprocessor, shared_memory_per_multiprocessor, max_threads_per_multi_processor = 65536, 233472, 2048

    assert kernel.resident_programs(86, 21632, 4, H100) == 5  # registers bound: 11 x 256 per warp
    assert kernel.resident_programs(109, 39168, 4, H100) == 4
    assert kernel.resident_programs(32, 100_000, 4, H100) == 2  # shared memory bound
    assert kernel.resident_programs(16, 0, 8, H100) == 8  # threads bound


def test_auto_backend_and_reference_paged_path():
    q, keys, values, idx, lengths, _ = make_case(3, torch.float32, 64, False, True, False, shape=(2, 4, 2, 40, 24))
    ref, _ = reference(q, keys, values, idx, lengths, None)
    k_pages, table = to_pages(keys, 4, 3)
    v_pages, _ = to_pages(values, 4, 3)
    out = sparse_decode(q, k_pages, v_pages, idx, lengths=lengths, page_table=table, backend="reference")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # fp32 is not a kernel dtype, so auto answers with the reference on any device
    torch.testing.assert_close(sparse_decode(q, keys, values, idx, lengths=lengths), ref, rtol=1e-5, atol=1e-5)


def _bad_inputs():
    q, keys, values, idx, lengths, _ = make_case(5, torch.bfloat16, 64, False, True, False, shape=(2, 4, 2, 40, 8))
    return q, keys, values, idx, lengths


@pytest.mark.parametrize(
    "mutate,error,match",
    [
        (lambda a: {**a, "selection": a["selection"].float()}, TypeError, "int32 or int64"),
        (lambda a: {**a, "selection": a["selection"][:, :1]}, ValueError, "per kv head"),
        (lambda a: {**a, "selection": a["selection"][..., :0]}, ValueError, "k = 0"),
        (lambda a: {**a, "selection": a["selection"][None]}, ValueError, r"\[B, H, k\]"),
        (lambda a: {**a, "q": a["q"][:, :3]}, ValueError, "not a multiple"),
        (lambda a: {**a, "k_cache": a["k_cache"][:1], "v_cache": a["v_cache"][:1]}, ValueError, "batch"),
        (lambda a: {**a, "q": a["q"].half()}, TypeError, "share a dtype"),
        (lambda a: {**a, "k_cache": a["k_cache"].transpose(2, 3).contiguous().transpose(2, 3)}, ValueError,
         "contiguous along head_dim"),
        (lambda a: {**a, "lengths": a["lengths"][:, :1]}, ValueError, "lengths must be"),
        (lambda a: {**a, "backend": "cuda"}, ValueError, "unknown backend"),
        (lambda a: {**a, "lengths": None, "selection": Selection(a["selection"][:, :, None].expand(-1, -1, 2, -1))},
         ValueError, "Tq = 1"),
        (lambda a: {**a, "selection": Selection(a["selection"][:, :, None])}, ValueError, "inside the Selection"),
        (lambda a: {**a, "page_table": torch.zeros(2, 10, dtype=torch.float32, device=DEVICE),
                    "k_cache": a["k_cache"].transpose(1, 2), "v_cache": a["v_cache"].transpose(1, 2)},
         TypeError, "page_table must be int"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_on_the_host(mutate, error, match):
    q, keys, values, idx, lengths = _bad_inputs()
    args = mutate({"q": q, "k_cache": keys, "v_cache": values, "selection": idx, "lengths": lengths,
                   "backend": "triton"})  # fmt: skip
    with pytest.raises(error, match=match):
        sparse_decode(args.pop("q"), args.pop("k_cache"), args.pop("v_cache"), args.pop("selection"), **args)


@pytest.mark.parametrize("bad", [-1, 40])
def test_debug_range_check(bad, monkeypatch):
    q, keys, values, idx, lengths = _bad_inputs()
    idx = idx.clone()
    idx[1, 1, 0] = bad
    lengths = lengths.clone()
    lengths[1, 1] = 8  # the bad slot is valid
    with pytest.raises(IndexError, match=r"\[0, 40\)"):
        sparse_decode(q, keys, values, idx, lengths=lengths, backend="triton", debug=True)
    monkeypatch.setenv("CTXSPARSE_DEBUG", "1")
    with pytest.raises(IndexError, match=r"\[0, 40\)"):
        sparse_decode(q, keys, values, idx, lengths=lengths, backend="triton")
    lengths[1, 1] = 0  # past the row's length a slot is padding and never checked
    assert sparse_decode(q, keys, values, idx, lengths=lengths, backend="triton").isfinite().all()


gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


@gpu
def test_long_context_few_rows_many_splits():
    """B=1, N=128K, S=50: the split-K path that small batches rely on, at its real size."""
    q, keys, values, idx, _, _ = make_case(11, torch.bfloat16, 128, False, False, False, shape=(1, 32, 8, 131072, 2622))
    ref, ref_lse = reference(q, keys, values, idx, None, None)
    out, lse = sparse_decode(q, keys, values, idx, backend="triton", return_lse=True)
    assert rel_err(out, ref) < REL_TOL[torch.bfloat16]
    check_lse(lse, ref_lse)
    assert any(r is not None for r in kernel._RESIDENT.values())  # the split plan saw the kernel's occupancy


@gpu
def test_split_plan_does_not_depend_on_call_order(monkeypatch):
    """Occupancy is read per compiled variant: k = 656 slots (divisible by 16: a variant with more programs
    per SM on an H100) run first must not change the split plan of k = 328 slots."""
    plans = []
    real_plan = kernel.plan_splits

    def spy(rows, num_slots, num_sms, config, resident_per_sm=None):
        plan = real_plan(rows, num_slots, num_sms, config, resident_per_sm)
        plans.append(plan)
        return plan

    def launched_plan(k: int) -> tuple[int, int]:
        q, keys, values, idx, _, _ = make_case(23, torch.bfloat16, 128, False, False, False, shape=(32, 32, 8, 4096, k))
        plans.clear()
        monkeypatch.setattr(sparse_decode_module, "_PLANS", {})  # plan afresh, not from an earlier call's plan
        sparse_decode(q, keys, values, idx, backend="triton")
        return plans[-1]

    monkeypatch.setattr(kernel, "plan_splits", spy)
    monkeypatch.setattr(kernel, "_RESIDENT", {})
    alone = launched_plan(328)
    monkeypatch.setattr(kernel, "_RESIDENT", {})
    launched_plan(656)
    assert launched_plan(328) == alone


@gpu
def test_no_host_sync_and_cuda_graph_capture():
    q, keys, values, idx, lengths, weights = make_case(13, torch.bfloat16, 128, False, True, True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any device->host wait inside raises
    try:
        for _ in range(2):  # the call that plans, then the planned fast path
            sparse_decode(q, keys, values, idx, lengths=lengths, weights=weights, backend="triton")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    out = torch.empty_like(q)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up (compilation) off the capture
        sparse_decode(q, keys, values, idx, lengths=lengths, weights=weights, backend="triton", out=out)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        sparse_decode(q, keys, values, idx, lengths=lengths, weights=weights, backend="triton", out=out)
    q.copy_(torch.randn_like(q))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    ref, _ = reference(q, keys, values, idx, lengths, weights)
    assert rel_err(out, ref) < REL_TOL[torch.bfloat16]


@gpu
@pytest.mark.parametrize("per_query_head,paged", [(False, False), (True, True)])
def test_flashinfer_backend_agrees(per_query_head, paged):
    pytest.importorskip("flashinfer")
    q, keys, values, idx, lengths, _ = make_case(17, torch.bfloat16, 128, per_query_head, True, False)
    ref, ref_lse = reference(q, keys, values, idx, lengths, None)
    k_in, v_in, table = keys, values, None
    if paged:
        (k_in, table), (v_in, _) = to_pages(keys, PAGE_SIZE, 17), to_pages(values, PAGE_SIZE, 17)
    out, lse = sparse_decode(q, k_in, v_in, idx, lengths=lengths, page_table=table, backend="flashinfer",
                             return_lse=True)  # fmt: skip
    assert rel_err(out, ref) < REL_TOL[torch.bfloat16]
    check_lse(lse, ref_lse)


@pytest.mark.parametrize("per_query_head,paged", [(False, False), (True, False), (False, True), (True, True)])
def test_flashinfer_row_folding_names_the_selected_rows(per_query_head, paged):
    """Row r of the single-row view is the K row FlashInfer's page_size=1 path reads for each selected slot."""
    from ctxsparse.attention.flashinfer_backend import folded_rows, single_row_view

    q, keys, _, idx, _, _ = make_case(19, torch.float32, 64, per_query_head, False, False, shape=(2, 4, 2, 40, 24))
    kv_of_row = torch.arange(idx.shape[1], device=DEVICE) // (idx.shape[1] // keys.shape[1])  # kv head per row
    expected = keys[:, kv_of_row].gather(2, idx.long().unsqueeze(-1).expand(-1, -1, -1, 64))
    cache, table = keys.transpose(1, 2).contiguous().transpose(1, 2), None  # token-major storage
    if paged:
        cache, table = to_pages(keys, 8, 19)
    rows = folded_rows(idx, cache, q.shape[1], table)
    torch.testing.assert_close(single_row_view(cache)[rows.view(-1), 0, 0].view_as(expected), expected)


def test_repeated_calls_reuse_one_plan_and_stay_exact(monkeypatch):
    """The eager fast path: a call with the signature (shapes, strides, dtypes, alignment) of an earlier one
    launches that call's plan without checks; fresh data each call must still match the reference."""
    monkeypatch.setattr(sparse_decode_module, "_PLANS", {})
    planned = []
    real = kernel.plan_decode
    monkeypatch.setattr(kernel, "plan_decode", lambda *a, **kw: planned.append(1) or real(*a, **kw))
    for seed in (31, 32, 33):
        q, keys, values, idx, lengths, weights = make_case(seed, torch.float16, 64, False, True, True)
        out, lse = sparse_decode(q, keys, values, idx, lengths=lengths, weights=weights, backend="triton",
                                 return_lse=True)  # fmt: skip
        ref, ref_lse = reference(q, keys, values, idx, lengths, weights)
        assert rel_err(out, ref) < REL_TOL[torch.float16]
        check_lse(lse, ref_lse)
    assert len(planned) == 1 and len(sparse_decode_module._PLANS) == 1
    # the same data through a Selection, a fixed output buffer, and a q misaligned by one element: new plans
    sel = Selection(idx[:, :, None], lengths[:, :, None], weights[:, :, None])
    buffer = torch.empty_like(q)
    assert sparse_decode(q, keys, values, sel, backend="triton", out=buffer).data_ptr() == buffer.data_ptr()
    shifted = torch.empty(q.numel() + 1, dtype=q.dtype, device=q.device)[1:].view_as(q).copy_(q)
    again = sparse_decode(shifted, keys, values, idx, lengths=lengths, weights=weights, backend="triton")
    for res in (buffer, again):
        assert rel_err(res, ref) < REL_TOL[torch.float16]
    assert len(planned) == 3
    # debug checks the device data on every call, planned signature or not
    bad = idx.clone()
    bad[0, 0, 0] = keys.shape[2]
    lengths = lengths.clone()
    lengths[0, 0] = idx.shape[2]
    with pytest.raises(IndexError, match="selection indices must lie"):
        sparse_decode(q, keys, values, bad, lengths=lengths, weights=weights, backend="triton", debug=True)


def test_a_planned_signature_does_not_let_bad_input_through(monkeypatch):
    monkeypatch.setattr(sparse_decode_module, "_PLANS", {})
    q, keys, values, idx, lengths = _bad_inputs()
    sparse_decode(q, keys, values, idx, lengths=lengths, backend="triton")
    with pytest.raises(TypeError, match="share a dtype"):
        sparse_decode(q.half(), keys, values, idx, lengths=lengths, backend="triton")
    with pytest.raises(ValueError, match="lengths must be"):
        sparse_decode(q, keys, values, idx, lengths=lengths[:, :1], backend="triton")
    with pytest.raises(ValueError, match="q must be"):
        sparse_decode("q", keys, values, idx, lengths=lengths, backend="triton")


def test_the_plan_cache_keys_every_shape_stride_dtype_device_and_slot(monkeypatch):
    """Each variant differs from the first call in one thing the plan reads: it must plan anew and stay exact."""
    monkeypatch.setattr(sparse_decode_module, "_PLANS", {})
    q, keys, values, idx, lengths, weights = make_case(41, torch.float16, 64, False, True, True)
    wide = torch.zeros(*keys.shape[:2], keys.shape[2] + 8, keys.shape[3], dtype=keys.dtype, device=DEVICE)
    variants = [
        dict(),
        dict(k_cache=wide[:, :, : keys.shape[2]].copy_(keys)),  # same shape, other strides
        dict(idx=idx.long()),
        dict(lengths=None, weights=weights),  # same tensors, other optional slots
        dict(lengths=lengths, weights=None),
        dict(idx=idx[..., :50].contiguous(), lengths=lengths.clamp(max=50), weights=None),
    ]
    for n, change in enumerate(variants, 1):
        args = dict(q=q, k_cache=keys, v_cache=values, idx=idx, lengths=lengths, weights=weights) | change
        out = sparse_decode(args["q"], args["k_cache"], args["v_cache"], args["idx"], lengths=args["lengths"],
                            weights=args["weights"], backend="triton")  # fmt: skip
        ref, _ = reference(q, keys, values, args["idx"], args["lengths"], args["weights"])
        assert rel_err(out, ref) < REL_TOL[torch.float16] and len(sparse_decode_module._PLANS) == n
    with pytest.raises(TypeError, match="share a dtype"):
        sparse_decode(q, keys, values.bfloat16(), idx, lengths=lengths, weights=weights, backend="triton")
    key = lambda t: sparse_decode_module._signature(t, keys, values, idx, None, None, None, None, None, "triton", False)
    assert key(q) == key(q.clone()) != key(q.to("meta"))  # the device is part of every tensor's entry

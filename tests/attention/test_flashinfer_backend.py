"""FlashInfer's dense and vector-sparse anchors on a GPU: both use_tensor_cores settings planned and timed,
the faster one run, and its output equal to the torch reference (skipped without CUDA and FlashInfer)."""

from __future__ import annotations

import pytest
import torch

from ctxsparse.attention import dense_attention_reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _paged_case(bsz=2, hq=32, hkv=8, n=1000, d=128, page=16):
    g = torch.Generator(device="cuda").manual_seed(3)
    pages = -(-n // page)
    k_pages = torch.randn(bsz * pages, page, hkv, d, device="cuda", generator=g).bfloat16()
    v_pages = torch.randn(bsz * pages, page, hkv, d, device="cuda", generator=g).bfloat16()
    table = torch.randperm(bsz * pages, device="cuda", generator=g).to(torch.int32).view(bsz, pages)
    q = torch.randn(bsz, hq, d, device="cuda", generator=g).bfloat16()
    # [B, Hkv, N, D] in order, for the reference
    dense = lambda c: c[table.long()].reshape(bsz, pages * page, hkv, d)[:, :n].transpose(1, 2).float()
    return q, k_pages, v_pages, table, n, dense(k_pages), dense(v_pages)


@pytest.mark.parametrize("use_tensor_cores", [None, False, True])
def test_dense_anchor_matches_the_reference_in_each_setting(use_tensor_cores):
    fb = pytest.importorskip("ctxsparse.attention.flashinfer_backend")
    pytest.importorskip("flashinfer")
    q, k_pages, v_pages, table, n, keys, values = _paged_case()
    runner = fb.FlashInferDense(q.device, use_tensor_cores=use_tensor_cores)
    runner.plan(table, n, k_pages, q.shape[1], q.shape[-1] ** -0.5, v_cache=v_pages)
    record = runner.choice_record()
    if use_tensor_cores is None:  # both timed, the faster kept
        assert set(record["times_us"]) == {"cuda_cores", "tensor_cores"}
        assert record["times_us"][record["setting"]] == min(record["times_us"].values())
    else:
        assert runner.use_tensor_cores is use_tensor_cores and record["times_us"] == {}
    out = runner.run(q, k_pages, v_pages).float()
    ref = dense_attention_reference(q[:, :, None].float(), keys, values)[:, :, 0]
    assert float((out - ref).norm() / ref.norm()) < 1.5e-2


def test_vector_sparse_anchor_times_both_settings():
    fb = pytest.importorskip("ctxsparse.attention.flashinfer_backend")
    pytest.importorskip("flashinfer")
    q, _, _, _, n, keys, values = _paged_case()
    keys, values = keys.bfloat16().contiguous(), values.bfloat16().contiguous()
    idx = torch.randint(0, n, (2, 8, 100), device="cuda", dtype=torch.int32)
    runner = fb.FlashInferVectorSparse(q.device)
    runner.plan(idx, None, keys, values, q.shape[1], q.shape[-1] ** -0.5)
    assert set(runner.choice.times_us) == {"cuda_cores", "tensor_cores"}
    a = runner.run(q).float()
    other = fb.FlashInferVectorSparse(q.device, use_tensor_cores=not runner.use_tensor_cores)
    other.plan(idx, None, keys, values, q.shape[1], q.shape[-1] ** -0.5)
    b = other.run(q).float()
    assert float((a - b).norm() / b.norm()) < 1.5e-2  # both settings compute the same attention

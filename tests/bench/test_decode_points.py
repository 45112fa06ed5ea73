"""One cache group of `bench decode` end to end without a GPU: the interpreter runs sparse_decode, a fake
FlashInfer stands in for the anchors (its tensor-core setting refuses the shape in one case), a stub for timing."""

from __future__ import annotations

import types

import pytest
import torch
from triton_cases import CUDA, load

load("")  # the kernels, interpreted when there is no CUDA

from ctxsparse.attention import flashinfer_backend as fb  # noqa: E402
from ctxsparse.bench import decode, timing  # noqa: E402
from ctxsparse.bench.timing import EagerTiming, Timing  # noqa: E402


class FakeWrapper:
    refuse_tensor_cores = False

    def __init__(self, workspace, layout, use_tensor_cores=False):
        self.use_tensor_cores = use_tensor_cores

    def plan(self, indptr, indices, last, num_qo_heads, *args, **kwargs):
        if self.use_tensor_cores and self.refuse_tensor_cores:
            raise ValueError("no tensor-core kernel for this shape")
        self.rows, self.heads = indptr.numel() - 1, num_qo_heads

    def run(self, q, kv):
        return torch.ones(q.shape[0], self.heads if q.dim() == 3 else q.shape[1], q.shape[-1], dtype=q.dtype)


@pytest.mark.skipif(CUDA, reason="the GPU run times real points")
@pytest.mark.parametrize("refuse", [False, True])
def test_a_cache_group_times_every_method(refuse, monkeypatch):
    fake = types.SimpleNamespace(BatchDecodeWithPagedKVCacheWrapper=FakeWrapper)
    monkeypatch.setattr(fb, "_flashinfer", lambda: fake)
    monkeypatch.setattr(FakeWrapper, "refuse_tensor_cores", refuse)
    clock = iter(range(1, 1000))

    def fake_time(fn, flusher, iters):
        fn()
        return Timing(float(next(clock)), 0.0, 0.0, iters)

    monkeypatch.setattr(timing, "cold_l2_time", fake_time)
    monkeypatch.setattr(timing, "eager_time", lambda fn, flusher, iters: EagerTiming(fake_time(fn, None, iters), 2.5))
    shapes = [decode.DecodeShape(1, 64, s, q_heads=4, kv_heads=2, head_dim=64) for s in (4, 8)]
    rows = list(decode._time_group(shapes, 3, None, torch.Generator().manual_seed(0), True, "unused"))
    assert [r.shape.k for r in rows] == [16, 8] and all(not r.skipped for r in rows)
    dense = rows[0].anchors["dense"]
    if refuse:  # one setting left: timed alone, the refusal recorded
        assert dense["setting"] == "cuda_cores" and "no tensor-core kernel" in dense["errors"]["tensor_cores"]
        assert list(dense["timings"]) == ["cuda_cores"] and rows[0].dense_us == 1.0
    else:  # both timed (1 and 2 µs by the stub clock): the first, faster one wins
        assert dense["times_us"] == {"cuda_cores": 1.0, "tensor_cores": 2.0} and rows[0].dense_us == 1.0
    assert all(r.dense_us == rows[0].dense_us for r in rows)  # one dense timing per cache
    for r in rows:
        assert r.ours_us is not None and r.ours_host_us == 2.5 and r.ours_eager_us is not None
        assert r.fi_sparse_us is not None and set(r.anchors) == {"dense", "fi_sparse"}
        assert r.ours_vs_fi_rel_err is not None  # against the fake's ones: finite, compared


@pytest.mark.skipif(CUDA, reason="the GPU run times real points")
def test_without_flashinfer_our_kernels_still_run(monkeypatch):
    monkeypatch.setattr(timing, "cold_l2_time", lambda fn, flusher, iters: (fn(), Timing(5.0, 5.0, 5.0, iters))[1])
    monkeypatch.setattr(timing, "eager_time", lambda fn, flusher, iters: EagerTiming(Timing(9.0, 9.0, 9.0, iters), 1.0))
    shape = decode.DecodeShape(1, 64, 8, q_heads=4, kv_heads=2, head_dim=64)
    gen = torch.Generator().manual_seed(0)
    (row,) = decode._time_group([shape], 3, None, gen, False, "FlashInfer is not installed")
    assert row.ours_us == 5.0 and row.ours_eager_us == 9.0 and row.dense_us is None and row.fi_sparse_us is None
    assert row.skipped == {"dense": "FlashInfer is not installed", "fi_sparse": "FlashInfer is not installed"}

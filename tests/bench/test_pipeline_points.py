"""One benchmark point end to end without a GPU: the interpreter runs the pipeline, a stub stands in for timing."""

from __future__ import annotations

import pytest
import torch
from triton_cases import CUDA, load

load("")  # the kernels, interpreted when there is no CUDA

from ctxsparse.bench import pipeline_gpu  # noqa: E402
from ctxsparse.bench.pipeline import PipelineShape  # noqa: E402
from ctxsparse.bench.timing import Timing  # noqa: E402


@pytest.mark.skipif(CUDA, reason="the GPU run times real points")
@pytest.mark.parametrize("indexer", ["ds", "quest"])
def test_time_point_runs_every_stage(indexer, monkeypatch):
    calls = []

    def fake_timing(fn, flusher, iters):
        fn()
        calls.append(iters)
        return Timing(float(len(calls)), 0.0, 0.0, iters)

    monkeypatch.setattr(pipeline_gpu, "cold_l2_time", fake_timing)
    shape = PipelineShape(indexer, batch=1, context=256, sparsity=8, q_heads=4, kv_heads=2, head_dim=64, channels=8)
    cache = pipeline_gpu.build_cache(shape, {16}, torch.Generator().manual_seed(0))
    assert cache.labels.shape == (1, 2, 256, 8) and cache.bounds[16][0].shape == (1, 2, 16, 64)
    row = pipeline_gpu.time_point(shape, cache, None, 3, with_fi=False, with_topk=True)
    assert row.skipped == {}
    assert [row.pipeline_us, row.index_us, row.index_topk_us, row.attention_us] == [1.0, 2.0, 3.0, 4.0]
    assert (row.topk_ours_us is not None) == (indexer == "ds") and row.topk_flashinfer_us is None


class _FakeWrapper:
    refuse = False

    def __init__(self, workspace, layout, use_tensor_cores=False):
        self.use_tensor_cores = use_tensor_cores

    def plan(self, *args, **kwargs):
        if self.refuse:
            raise ValueError("page size 16 refused")

    def run(self, q, kv):
        return q


@pytest.mark.skipif(CUDA, reason="the GPU run times real points")
@pytest.mark.parametrize("refuse", [False, True])
def test_dense_anchor_times_both_settings_or_says_why(refuse, monkeypatch):
    import types

    from ctxsparse.attention import flashinfer_backend as fb

    fake = types.SimpleNamespace(BatchDecodeWithPagedKVCacheWrapper=_FakeWrapper)
    monkeypatch.setattr(fb, "_flashinfer", lambda: fake)
    monkeypatch.setattr(_FakeWrapper, "refuse", refuse)
    us = iter([7.0, 4.0])
    monkeypatch.setattr(pipeline_gpu, "cold_l2_time", lambda fn, flusher, iters: Timing(next(us), 0.0, 0.0, iters))
    shape = PipelineShape("ds", batch=1, context=256, sparsity=8, q_heads=4, kv_heads=2, head_dim=64, channels=8)
    cache = pipeline_gpu.build_cache(shape, set(), torch.Generator().manual_seed(0))
    anchor = pipeline_gpu._time_dense(shape, cache, None, 3)
    if refuse:
        assert anchor.timing is None and anchor.reason.startswith("flashinfer dense refused")
        assert "page size 16" in anchor.reason
    else:
        assert anchor.median_us == 4.0 and anchor.record["setting"] == "tensor_cores"
        assert anchor.record["times_us"] == {"cuda_cores": 7.0, "tensor_cores": 4.0}

"""A benchmark's FlashInfer anchor without a GPU: both settings' timings recorded, a refused shape explained."""

from __future__ import annotations

import types

import pytest
import torch

from ctxsparse.attention import flashinfer_backend as fb
from ctxsparse.bench.anchors import plan_anchor
from ctxsparse.bench.gpu_run import flashinfer_status
from ctxsparse.bench.timing import Timing


class FakeWrapper:
    refuse = False

    def __init__(self, workspace, layout, use_tensor_cores=False):
        self.use_tensor_cores = use_tensor_cores

    def plan(self, *args, **kwargs):
        if self.refuse:
            raise ValueError("head_dim 96 is not supported")

    def run(self, q, kv):
        return self.use_tensor_cores


@pytest.fixture
def dense(monkeypatch):
    monkeypatch.setattr(
        fb, "_flashinfer", lambda: types.SimpleNamespace(BatchDecodeWithPagedKVCacheWrapper=FakeWrapper)
    )
    return fb.FlashInferDense(torch.device("cpu"), 64)


def _plan(runner):
    runner.plan(torch.arange(4, dtype=torch.int32).view(1, 4), 64, torch.zeros(4, 16, 2, 8), 8, 0.3)


def _timing(call):
    us = 10.0 if call() else 30.0
    return Timing(us, us - 1, us + 1, 7, graphed=True)


def test_anchor_records_both_settings_and_the_winner(dense):
    anchor = plan_anchor(dense, _plan, lambda r: lambda: r.run(None, None, None), _timing)
    assert anchor.reason is None and anchor.median_us == 10.0
    rec = anchor.record
    assert rec["setting"] == "tensor_cores" and rec["use_tensor_cores"] is True
    assert rec["times_us"] == {"cuda_cores": 30.0, "tensor_cores": 10.0}
    assert rec["timings"]["cuda_cores"]["median_us"] == 30.0 and rec["timings"]["tensor_cores"]["p90_us"] == 11.0


def test_a_refused_shape_gives_a_reason_not_a_crash(dense, monkeypatch):
    monkeypatch.setattr(FakeWrapper, "refuse", True)
    anchor = plan_anchor(dense, _plan, lambda r: lambda: r.run(None, None, None), _timing)
    assert anchor.timing is None and anchor.runner is None
    assert "refused every setting" in anchor.reason and "head_dim 96 is not supported" in anchor.reason


def test_flashinfer_absent_or_off_names_the_missing_columns():
    assert flashinfer_status(requested_off=False, installed=True) == (True, None)
    run, note = flashinfer_status(requested_off=False, installed=False)
    assert not run and "not installed" in note and "dense" in note and "our kernels still run" in note
    run, note = flashinfer_status(requested_off=True, installed=True)
    assert not run and "--no-flashinfer" in note

"""The anchor's setting choice with a fake timer: FlashInfer's two decode settings planned, timed, the faster run.

A fake flashinfer module stands in for the real one (absent on CPU); its wrapper records what it was
planned with and which setting it is, and the fake timer says how long each setting takes.
"""

from __future__ import annotations

import types

import pytest
import torch

from ctxsparse.attention import flashinfer_backend as fb
from ctxsparse.attention.fastest import pick_fastest


def test_pick_fastest_takes_the_smallest_time_and_reports_failures():
    times = {"a": 5.0, "b": 3.0, "c": 3.0}

    def fail():
        raise ValueError("shape refused")

    choice = pick_fastest({"a": lambda: "a", "b": lambda: "b", "c": lambda: "c", "d": fail},
                          lambda call: times.get(call(), 0.0))  # fmt: skip
    assert choice.winner == "b"  # a tie goes to the earlier candidate
    assert choice.times_us == {"a": 5.0, "b": 3.0, "c": 3.0} and "shape refused" in choice.errors["d"]
    with pytest.raises(RuntimeError, match="every candidate failed.*shape refused"):
        pick_fastest({"d": fail}, lambda call: call())
    with pytest.raises(ValueError, match="at least one"):
        pick_fastest({}, lambda call: 0.0)


class FakeWrapper:
    refuse: set[bool] = set()

    def __init__(self, workspace, layout, use_tensor_cores=False):
        self.use_tensor_cores = use_tensor_cores
        self.planned = None

    def plan(self, indptr, indices, last, num_qo_heads, num_kv_heads, head_dim, page_size, **kw):
        if self.use_tensor_cores in self.refuse:
            raise ValueError(f"unsupported (tensor cores {self.use_tensor_cores})")
        self.planned = (indptr.tolist(), indices.tolist(), last.tolist(), num_qo_heads, num_kv_heads, page_size)

    def run(self, q, kv, return_lse=False):
        return self.use_tensor_cores


@pytest.fixture
def fake_flashinfer(monkeypatch):
    module = types.SimpleNamespace(BatchDecodeWithPagedKVCacheWrapper=FakeWrapper)
    monkeypatch.setattr(fb, "_flashinfer", lambda: module)
    monkeypatch.setattr(fb, "_CHOICES", {})
    monkeypatch.setattr(FakeWrapper, "refuse", set())
    return module


def _dense_plan(runner, seq_len=40):
    table = torch.arange(6, dtype=torch.int32).view(2, 3)
    k_pages = torch.zeros(6, 16, 2, 8)
    runner.plan(table, seq_len, k_pages, 4, 0.5)
    return runner


@pytest.mark.parametrize("tc_us,winner", [(2.0, True), (9.0, False)])
def test_dense_runs_the_setting_the_timer_finds_faster(fake_flashinfer, tc_us, winner):
    fake_times = {True: tc_us, False: 5.0}
    runner = _dense_plan(fb.FlashInferDense(torch.device("cpu"), 64, timer=lambda call: fake_times[call()]))
    assert runner.use_tensor_cores is winner and runner.wrapper.use_tensor_cores is winner
    record = runner.choice_record()
    assert record["times_us"] == {"cuda_cores": 5.0, "tensor_cores": tc_us} and record["use_tensor_cores"] is winner
    # both settings were planned alike: pages 0-2 of sequence 0, 3-5 of sequence 1, 40 - 2 * 16 in the last
    for wrapper in runner.wrappers.values():
        assert wrapper.planned == ([0, 3, 6], [0, 1, 2, 3, 4, 5], [8, 8], 4, 2, 16)
    assert runner.run(None, None, None) is winner


def test_a_refused_setting_leaves_the_other_and_says_why(fake_flashinfer, monkeypatch):
    monkeypatch.setattr(FakeWrapper, "refuse", {True})
    runner = _dense_plan(fb.FlashInferDense(torch.device("cpu"), 64, timer=lambda call: 1.0))
    assert (
        runner.use_tensor_cores is False and "unsupported (tensor cores True)" in runner.choice.errors["tensor_cores"]
    )
    monkeypatch.setattr(FakeWrapper, "refuse", {True, False})
    with pytest.raises(RuntimeError, match="refused every setting"):
        _dense_plan(fb.FlashInferDense(torch.device("cpu"), 64, timer=lambda call: 1.0))


def test_a_fixed_setting_is_not_timed(fake_flashinfer):
    def no_timer(call):
        raise AssertionError("a fixed setting needs no timing")

    runner = _dense_plan(fb.FlashInferDense(torch.device("cpu"), 64, use_tensor_cores=True, timer=no_timer))
    assert list(runner.wrappers) == ["tensor_cores"] and runner.use_tensor_cores


def test_default_timer_choice_is_remembered_per_shape_class(fake_flashinfer, monkeypatch):
    calls = []
    monkeypatch.setattr(fb, "cuda_event_timer", lambda: lambda call: calls.append(call()) or (1.0 if call() else 2.0))
    _dense_plan(fb.FlashInferDense(torch.device("cpu"), 64))
    assert len(calls) == 2
    again = _dense_plan(fb.FlashInferDense(torch.device("cpu"), 64), seq_len=45)  # same power-of-two class of pages
    assert len(calls) == 2 and again.use_tensor_cores
    _dense_plan(fb.FlashInferDense(torch.device("cpu"), 64), seq_len=16)  # 1 page: another class
    assert len(calls) == 4


def test_vector_sparse_chooses_too(fake_flashinfer):
    idx = torch.tensor([[[0, 3], [1, 2]]], dtype=torch.int32)  # [B=1, Hkv=2, k=2]
    cache = torch.zeros(1, 2, 4, 8)
    runner = fb.FlashInferVectorSparse(torch.device("cpu"), 64, timer=lambda call: 1.0 if call() else 4.0)
    runner.plan(idx, None, cache, cache, 4, 0.5)
    assert runner.use_tensor_cores and runner.choice.times_us == {"cuda_cores": 4.0, "tensor_cores": 1.0}
    indptr, rows, *_ = runner.wrapper.planned
    assert indptr == [0, 2, 4] and rows == [0, 3, 5, 6]  # kv head 1's rows start at N = 4

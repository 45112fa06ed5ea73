"""DecodeLaunch's direct launch path: the same kernel arguments as the tensor path, scratch per stream.

Without CUDA the direct launchers are recorders and the stream is a number; what is checked is that
a direct call passes, slot by slot, what the tensor path (tested against the reference elsewhere) passes,
with device addresses for tensors, and that the partial-state scratch is reused per stream but never
while a CUDA graph is being captured.
"""

from __future__ import annotations

import importlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")
kernel = importlib.import_module("ctxsparse.attention.triton_decode")
from ctxsparse.attention import decode_launch  # noqa: E402
from ctxsparse.attention.split_plan import default_config  # noqa: E402
from ctxsparse.attention.triton_launch import DirectLaunch, StreamScratch  # noqa: E402

SPLIT_SCRATCH = (9, 10, 11)  # part_m, part_l, part_acc among the split kernel's arguments
LSE_SLOT = 8


def _inputs():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 64, generator=g).half()
    keys = torch.randn(2, 2, 160, 64, generator=g).half()
    idx = torch.randint(0, 160, (2, 2, 100), generator=g, dtype=torch.int32)
    lengths = torch.randint(1, 101, (2, 2), generator=g, dtype=torch.int32)
    return q, keys, keys.clone(), idx, lengths


def _recorder(calls: list):
    return lambda *call: calls.append(call)


def _go_direct(plan, calls: list, monkeypatch, capturing: bool = False) -> None:
    rows, splits = plan.out_shape[0] * 2, plan.splits
    split = DirectLaunch(_recorder(calls), (rows, splits, 1), 0xF, ())
    merge = (
        DirectLaunch(_recorder(calls), (plan.out_shape[0] * plan.out_shape[1], 1, 1), 0xE, ()) if splits > 1 else None
    )
    plan.direct, plan.stream_scratch = (split, merge), StreamScratch(torch.device("cpu"))
    monkeypatch.setattr(decode_launch, "_raw_stream", lambda index: 5)
    monkeypatch.setattr(decode_launch, "_capturing", lambda: capturing)
    monkeypatch.setattr(torch._C, "_cuda_getDevice", lambda: plan.device_index, raising=False)


@pytest.mark.parametrize("max_splits", [1, 64])
def test_direct_call_passes_what_the_tensor_path_passes(max_splits, monkeypatch):
    q, keys, values, idx, lengths = _inputs()
    config = default_config(64).__class__(block_n=16, max_splits=max_splits)
    plan = kernel.plan_decode(q, keys, values, idx, lengths, None, 0.125, None, True, config)
    assert (plan.splits > 1) == (max_splits > 1)
    tensor_calls, direct_calls = [], []
    plan.split_launch = _recorder(tensor_calls)
    plan.merge_launch = _recorder(tensor_calls) if plan.merge_launch is not None else None
    out = torch.empty_like(q)
    _, lse_t = plan(q, keys, values, idx, lengths, None, None, out)
    _go_direct(plan, direct_calls, monkeypatch)
    _, lse_d = plan(q, keys, values, idx, lengths, None, None, out)
    assert len(tensor_calls) == len(direct_calls) == (2 if plan.splits > 1 else 1)
    assert direct_calls[0][:5] == (4, plan.splits, 1, 5, 0xF)
    split_t, split_d = tensor_calls[0], direct_calls[0][5:]
    assert len(split_t) == len(split_d)
    for slot, (t, d) in enumerate(zip(split_t, split_d, strict=True)):
        if slot == LSE_SLOT:  # a fresh lse each call
            assert (t, d) == (lse_t, lse_d.data_ptr())
        elif slot in SPLIT_SCRATCH and plan.splits > 1:  # the three scratch views: the same layout
            base_t, base_d = split_t[SPLIT_SCRATCH[0]].data_ptr(), split_d[SPLIT_SCRATCH[0]]
            assert d - base_d == t.data_ptr() - base_t
        else:
            assert d == (t.data_ptr() if isinstance(t, torch.Tensor) else t), f"slot {slot}"
    if plan.splits > 1:
        merge_t, merge_d = tensor_calls[1], direct_calls[1]
        assert merge_d[:5] == (8, 1, 1, 5, 0xE) and merge_d[5:8] == split_d[9:12]
        assert merge_d[8:10] == (out.data_ptr(), lse_d.data_ptr()) and merge_d[10:] == merge_t[5:]


def test_scratch_is_kept_per_stream_but_not_in_graph_capture(monkeypatch):
    q, keys, values, idx, lengths = _inputs()
    plan = kernel.plan_decode(q, keys, values, idx, lengths, None, 0.125, None, False)
    assert plan.splits > 1
    calls = []
    _go_direct(plan, calls, monkeypatch)
    scratch = plan.stream_scratch
    for _ in range(2):
        plan(q, keys, values, idx, lengths, None, None)
    assert calls[0][5 + 9] == calls[2][5 + 9] == scratch.buffers[5][2]  # one buffer, reused on stream 5
    monkeypatch.setattr(decode_launch, "_raw_stream", lambda index: 6)
    plan(q, keys, values, idx, lengths, None, None)
    assert calls[4][3] == 6 and calls[4][5 + 9] == scratch.buffers[6][2] != scratch.buffers[5][2]
    monkeypatch.setattr(decode_launch, "_capturing", lambda: True)
    plan(q, keys, values, idx, lengths, None, None)
    assert calls[6][5 + 9] not in {held[2] for held in scratch.buffers.values()}  # the graph's own scratch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_direct_launch_is_bound_and_agrees_with_the_runner_on_two_streams(monkeypatch):
    from ctxsparse.attention import sparse_decode

    sd = importlib.import_module("ctxsparse.attention.sparse_decode")
    g = torch.Generator(device="cuda").manual_seed(5)
    q = torch.randn(4, 32, 128, generator=g, device="cuda").bfloat16()
    keys = torch.randn(4, 8, 8192, 128, generator=g, device="cuda").bfloat16()
    idx = torch.randint(0, 8192, (4, 8, 700), generator=g, device="cuda", dtype=torch.int32)
    results = {}
    for mode in ("runner", "direct"):
        monkeypatch.setenv(decode_launch.LAUNCH_ENV, mode)
        monkeypatch.setattr(sd, "_PLANS", {})
        results[mode] = sparse_decode(q, keys, keys, idx, backend="triton", return_lse=True)
        (plan,) = sd._PLANS.values()
        assert plan.splits > 1 and (plan.direct is not None) == (mode == "direct")
    torch.testing.assert_close(results["direct"], results["runner"], rtol=0, atol=0)
    streams = [torch.cuda.Stream() for _ in range(2)]
    outs = []
    for i, stream in enumerate(streams):  # the same signature on two streams at once: separate scratch
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            outs.append([sparse_decode(q * (i + 1), keys, keys, idx, backend="triton") for _ in range(3)])
    torch.cuda.synchronize()
    for i, calls in enumerate(outs):
        want = sparse_decode(q * (i + 1), keys, keys, idx, backend="reference")
        for out in calls:
            torch.testing.assert_close(out.float(), want.float(), rtol=2e-2, atol=2e-2)

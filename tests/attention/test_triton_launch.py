"""Binding a compiled kernel's C launcher once, and the per-stream scratch of planned calls (no GPU needed).

The compiled kernel here is a stand-in with the call chain of Triton 3.6 (runner -> launcher object ->
C launch function taking grid, stream, function, flags, scratch, metadata, hooks, then the kernel
arguments), so what is checked is the binding logic: it must reproduce the runner's call exactly, and
refuse wherever it cannot prove that.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("triton")
from triton import knobs  # noqa: E402
from triton.compiler.compiler import LazyDict  # noqa: E402

from ctxsparse.attention.triton_launch import StreamScratch, bind_direct  # noqa: E402


class _Launcher:
    """Triton 3.6's launcher object in outline: adds launch flags and scratch slots, then calls `launch`."""

    def __init__(self, launch) -> None:
        self.launch = launch

    def __call__(self, gx, gy, gz, stream, function, *args):
        self.launch(gx, gy, gz, stream, function, False, True, None, None, *args)


class _Compiled:
    """A compiled kernel in outline: `kernel[grid](*args, stream=...)` passes packed metadata and hooks."""

    def __init__(self, launch, scratch: int = 0) -> None:
        self.function, self.module, self.replays = 0xF00, object(), []  # shared with shallow copies
        self.packed_metadata = (4, 1, 1024)
        self.metadata = SimpleNamespace(global_scratch_size=scratch, profile_scratch_size=0)
        self._run = _Launcher(launch)

    @property
    def run(self):
        return self._run

    def __getitem__(self, grid):
        def runner(*args, stream=None):
            self.replays.append(grid)
            hooks = (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook)
            self.run(*grid, stream, self.function, self.packed_metadata, LazyDict({"stream": stream}), *hooks, *args)

        return runner


def test_bound_launch_repeats_the_runners_call_with_new_stream_and_arguments():
    calls = []
    compiled = _Compiled(lambda *call: calls.append(call))
    q, out = torch.zeros(4), torch.zeros(4)
    args = (q, out, 7, 0.5, True)
    bound = bind_direct(compiled, (3, 2, 1), args, stream=11)
    assert bound is not None and calls == []  # binding records the call; it launches nothing
    compiled[(3, 2, 1)](*args, stream=11)
    bound(11, args)
    runner_call, bound_call = calls
    assert len(runner_call) == len(bound_call) == 13 + len(args)
    for slot, (a, b) in enumerate(zip(runner_call, bound_call, strict=True)):
        if slot in (10, 11, 12):  # launch metadata and the two (empty) hook chains: not passed when bound
            assert b is None and a is not None
        else:
            assert a is b or a == b
    bound(12, (q.data_ptr(), out.data_ptr(), 7, 0.5, True))
    assert calls[2][3] == 12 and calls[2][-5:] == (q.data_ptr(), out.data_ptr(), 7, 0.5, True)
    assert calls[2][:3] == (3, 2, 1) and calls[2][4:-5] == bound_call[4:-5]


def test_binding_refuses_what_it_cannot_prove():
    args = (torch.zeros(2), 3)
    assert bind_direct(_Compiled(lambda *c: None, scratch=64), (1, 1, 1), args, 0) is None  # per-launch scratch

    class Reordered(_Compiled):  # a launcher whose layout differs: arguments packed into one tuple
        def __getitem__(self, grid):
            return lambda *a, stream=None: self.run.launch(*grid, stream, self.function, a)

    assert bind_direct(Reordered(lambda *c: None), (1, 1, 1), args, 0) is None
    assert bind_direct(SimpleNamespace(), (1, 1, 1), args, 0) is None  # no launcher at all
    compiled = _Compiled(lambda *c: None)
    hook = lambda meta: None  # noqa: E731
    knobs.runtime.launch_enter_hook.add(hook)  # a profiler's hook must see every launch
    try:
        assert bind_direct(compiled, (1, 1, 1), args, 0) is None
    finally:
        knobs.runtime.launch_enter_hook.remove(hook)
    launch = compiled.run.launch
    assert bind_direct(compiled, (1, 1, 1), args, 0) is not None
    assert compiled.run.launch is launch and compiled.module is not None  # the shared kernel is left alone


def test_stream_scratch_is_reused_per_stream_and_grows():
    scratch = StreamScratch(torch.device("cpu"))
    a = scratch.address(1, 100)
    assert scratch.address(1, 50) == a  # same stream, smaller need: the same buffer
    assert scratch.address(2, 100) != a  # another stream never shares
    grown = scratch.address(1, 1000)
    assert scratch.buffers[1][0].numel() == 1000 and scratch.address(1, 10) == grown
    scratch.clear()
    assert scratch.buffers == {}


def test_a_binding_is_recorded_once_per_kernel_and_grid():
    compiled = _Compiled(lambda *c: None)
    args = (torch.zeros(2), 3)
    first = bind_direct(compiled, (2, 1, 1), args, 0)
    again = bind_direct(compiled, (2, 1, 1), (torch.ones(2), 4), 0)
    assert len(compiled.replays) == 1 and again.fixed == first.fixed and again.grid == (2, 1, 1)
    assert bind_direct(compiled, (4, 1, 1), args, 0).grid == (4, 1, 1) and len(compiled.replays) == 2
    hook = lambda meta: None  # noqa: E731
    knobs.runtime.launch_exit_hook.add(hook)  # hooks are checked before any kept binding is used
    try:
        assert bind_direct(compiled, (2, 1, 1), args, 0) is None
    finally:
        knobs.runtime.launch_exit_hook.remove(hook)

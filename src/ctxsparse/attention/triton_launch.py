"""Launching compiled Triton kernels without Triton's per-call Python: bound launchers and reused scratch.

Triton's compiled-kernel runner looks up the current device and stream, builds launch metadata, reads its
hook settings and allocates its own scratch on every launch, then hands tensors to a C launcher that asks
the driver about every pointer. For a kernel launched thousands of times with the same grid, all of that
but the stream and the pointers is fixed: `bind_direct` records, once, the exact call the runner makes to
the C launcher and keeps its fixed part, so a launch is one C call with integer pointers.

The C launcher's argument layout is Triton's private business and changes between releases; the recorded
call is accepted only where it has the layout `(grid x, y, z, stream, function, <fixed>, *kernel args)`
(Triton 3.6's), and the caller falls back to the runner otherwise (Triton 3.9 packs the kernel arguments
into one tuple, so there planned calls go through the runner).
"""

from __future__ import annotations

import copy
import weakref

import torch


class DirectLaunch:
    """One compiled kernel bound to a grid: a call passes the stream and the kernel arguments, nothing else.

    Pointer arguments may be given as integers (device addresses), which the C launcher takes without a
    driver query; `fixed` holds what lies between the function handle's slot and the kernel arguments
    (launch flags, the kernel's packed metadata, no hooks, no scratch).
    """

    __slots__ = ("launch", "grid", "function", "fixed")

    def __init__(self, launch, grid: tuple[int, int, int], function, fixed: tuple) -> None:
        self.launch, self.grid, self.function, self.fixed = launch, grid, function, fixed

    def __call__(self, stream: int, args: tuple) -> None:
        gx, gy, gz = self.grid
        self.launch(gx, gy, gz, stream, self.function, *self.fixed, *args)


def _no_hooks(hook) -> bool:
    """Triton's launch hooks are None or a chain of callables (empty unless a profiler added one)."""
    return hook is None or getattr(hook, "calls", None) == []


def bind_direct(compiled, grid: tuple[int, int, int], args: tuple, stream: int) -> DirectLaunch | None:
    """Bind compiled (a Triton CompiledKernel) for direct launches on grid, or None where that is not safe.

    Replays the runner once with the C launcher swapped for a recorder (nothing runs on the device) and
    accepts the recorded call only where it is (grid, stream, function, fixed..., *args) with the very
    argument objects given, the kernel needs no per-launch scratch, and no launch hooks are installed.
    The bound call passes no hooks (and so no launch metadata, which only hooks read): a profiler that
    adds hooks after planning does not see planned calls. An accepted binding is kept per compiled kernel
    and grid, so re-planning (a cache that grows every step) records no more than once per variant.
    """
    try:
        from triton import knobs
        from triton.compiler.compiler import LazyDict

        hooks = (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook)
        compiled[grid]  # loads the kernel
        launch = compiled.run.launch
    except Exception:  # a Triton without these parts: launch through its runner
        return None
    meta = compiled.metadata
    if (
        not all(_no_hooks(h) for h in hooks)
        or getattr(meta, "global_scratch_size", 0)
        or getattr(meta, "profile_scratch_size", 0)
    ):
        return None
    grid = tuple(grid)
    try:
        known = _BOUND.setdefault(compiled, {})
    except TypeError:  # not weakly referenceable: bind afresh each time
        known = {}
    if grid in known:
        return DirectLaunch(launch, grid, compiled.function, known[grid])
    # Record on shallow copies (same loaded module and function) so that no other thread's launch of the
    # shared compiled kernel is ever diverted while this records.
    recorded: list[tuple] = []
    shadow_run = copy.copy(compiled.run)
    shadow_run.launch = lambda *call: recorded.append(call)
    shadow = copy.copy(compiled)
    shadow._run = shadow_run
    try:
        if shadow.run is not shadow_run:
            return None
        shadow[grid](*args, stream=stream)
    except Exception:
        return None
    finally:
        shadow.module = None  # the copy must never unload the module it shares (where Triton unloads on del)
    if len(recorded) != 1:
        return None
    call, n = recorded[0], len(args)
    head, fixed, tail = call[:5], call[5 : len(call) - n], call[len(call) - n :]
    if len(call) < 5 + n or head != (*grid, stream, compiled.function):
        return None
    if any(a is not b for a, b in zip(tail, args, strict=True)):
        return None
    if any(isinstance(v, torch.Tensor) for v in fixed):  # scratch the launcher allocated: not reusable
        return None
    # the (empty) hook chains and the metadata built for them: None, so the C launcher calls no Python
    fixed = known[grid] = tuple(None if any(v is h for h in hooks) or isinstance(v, LazyDict) else v for v in fixed)
    return DirectLaunch(launch, grid, compiled.function, fixed)


# The fixed part of accepted bindings, per compiled kernel (dropped with it) and grid.
_BOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class StreamScratch:
    """float32 scratch kept per stream on one device, grown on demand and reused by every planned call.

    Reuse is safe because kernels queued on one stream run in order; calls on different streams get
    different buffers. The buffers live as long as the process (or until `clear`): one per stream, as
    large as the largest request seen on it. During CUDA-graph capture callers allocate afresh instead,
    so a graph never holds an address this cache may later free.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffers: dict[int, tuple[torch.Tensor, int, int]] = {}  # stream -> (buffer, elements, address)

    def address(self, stream: int, elements: int) -> int:
        """Device address of at least `elements` float32 values private to `stream`."""
        held = self.buffers.get(stream)
        if held is None or held[1] < elements:
            buffer = torch.empty(elements, dtype=torch.float32, device=self.device)
            held = self.buffers[stream] = (buffer, elements, buffer.data_ptr())
        return held[2]

    def clear(self) -> None:
        self.buffers.clear()

"""One planned sparse decode call (`DecodeLaunch`): how it launches the compiled kernels, and its scratch.

Three launch modes (CTXSPARSE_TRITON_LAUNCH): "direct" passes integer device addresses straight to the
compiled kernels' C launchers, bound once per plan (triton_launch.py), with the split-K partial states in
a scratch buffer kept per CUDA stream; "runner" and "jit" go through Triton's own per-launch Python (the
compiled kernel's runner, or the JIT entry as under the interpreter) with tensors and fresh scratch.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass

import torch

from ctxsparse.attention.triton_launch import DirectLaunch, StreamScratch

# How planned calls launch the compiled kernels: "direct" (the compiled kernel's C launcher, bound once per
# plan: the default, falling back to "runner" where the bound call cannot be verified), "runner" (Triton's
# CompiledKernel[grid] runner per launch) or "jit" (Triton's JIT entry per launch, as before plans).
LAUNCH_ENV = "CTXSPARSE_TRITON_LAUNCH"
LAUNCH_MODES = ("direct", "runner", "jit")


def launch_mode(interpreted: bool) -> str:
    """The launch mode planned calls use: "jit" under Triton's interpreter, else CTXSPARSE_TRITON_LAUNCH."""
    mode = "jit" if interpreted else os.environ.get(LAUNCH_ENV, "") or "direct"
    if mode not in LAUNCH_MODES:
        raise ValueError(f"{LAUNCH_ENV}={mode!r} is not a launch mode; choose one of {LAUNCH_MODES}.")
    return mode


_SCRATCH: dict[torch.device, StreamScratch] = {}  # one per device, shared by every plan on it


def scratch_for(device: torch.device) -> StreamScratch:
    """The per-stream scratch of planned calls on device."""
    return _SCRATCH.setdefault(device, StreamScratch(device))


def clear_scratch() -> None:
    """Free the per-stream scratch buffers kept for planned calls (they regrow on the next call)."""
    for scratch in _SCRATCH.values():
        scratch.clear()


@dataclass
class DecodeLaunch:
    """A planned sparse decode for one call signature: the split plan, the kernel arguments that are not
    per-call tensors, and the launchers. Calling it allocates the output (and lse) and launches.

    Planning (occupancy, split count, argument lists, compilation, launcher binding) is host work done once
    per signature. With direct launchers (`direct` set) a call passes integer device addresses straight to
    the compiled kernels' C launchers on the current stream, and the split kernel's partial states go to a
    scratch buffer reused by every call on that stream (`StreamScratch`; fresh during CUDA-graph capture).
    Otherwise the launchers take tensors and a call allocates its own scratch.
    """

    splits: int
    chunk: int
    out_shape: tuple[int, int, int]
    return_lse: bool
    scratch: int  # float32 elements per partial-state vector (m and l), padded to 16 bytes
    head_dim: int
    split_launch: object
    split_tail: tuple
    merge_launch: object | None
    merge_tail: tuple
    out_like_q: bool = False  # q is contiguous, so empty_like(q) has the planned output strides
    direct: tuple[DirectLaunch, DirectLaunch | None] | None = None
    device_index: int = -1
    stream_scratch: StreamScratch | None = None

    @property
    def launch_mode(self) -> str:
        return "direct" if self.direct is not None else "tensors"

    def __call__(self, q, k_cache, v_cache, indices, lengths, weights, page_table, out=None):
        if out is None:
            out = (
                torch.empty_like(q) if self.out_like_q else torch.empty(self.out_shape, dtype=q.dtype, device=q.device)
            )
        lse = torch.empty(self.out_shape[:2], dtype=torch.float32, device=q.device) if self.return_lse else out
        if self.direct is not None:
            if torch._C._cuda_getDevice() != self.device_index:  # launch where the kernels were loaded
                with torch.cuda.device(self.device_index):
                    self._launch_direct(q, k_cache, v_cache, indices, lengths, weights, page_table, out, lse)
            else:
                self._launch_direct(q, k_cache, v_cache, indices, lengths, weights, page_table, out, lse)
            return (out, lse) if self.return_lse else out
        if self.splits > 1:
            # m and l per (query row, split), then acc [rows * splits, D]: one allocation, three views
            n = self.scratch
            work = torch.empty(n * (2 + self.head_dim), dtype=torch.float32, device=q.device)
            part_m, part_l, part_acc = work[:n], work[n : 2 * n], work[2 * n :]
        else:
            part_m = part_l = part_acc = out  # not touched when SINGLE_SPLIT
        # absent optional inputs still need a pointer; their loads are compiled out
        len_t = indices if lengths is None else lengths
        w_t = indices if weights is None else weights
        pt = indices if page_table is None else page_table
        self.split_launch(q, k_cache, v_cache, indices, len_t, w_t, pt, out, lse, part_m, part_l, part_acc,
                          *self.split_tail)  # fmt: skip
        if self.merge_launch is not None:
            self.merge_launch(part_m, part_l, part_acc, out, lse, *self.merge_tail)
        return (out, lse) if self.return_lse else out

    def _launch_direct(self, q, k_cache, v_cache, indices, lengths, weights, page_table, out, lse) -> None:
        """Both launches on the current stream, pointers as integers (inputs already match the plan)."""
        stream = _raw_stream(self.device_index)
        idx, o, lse_p = indices.data_ptr(), out.data_ptr(), lse.data_ptr()
        work = None
        if self.splits > 1:
            n = self.scratch
            if _capturing():  # a graph keeps its own scratch: this cache may free or regrow its buffers
                work = torch.empty(n * (2 + self.head_dim), dtype=torch.float32, device=q.device)
                base = work.data_ptr()
            else:
                base = self.stream_scratch.address(stream, n * (2 + self.head_dim))
            part = (base, base + 4 * n, base + 8 * n)  # m, l, acc as in the tensor path, in bytes
        else:
            part = (o, o, o)
        split, merge = self.direct
        len_p = idx if lengths is None else lengths.data_ptr()
        w_p = idx if weights is None else weights.data_ptr()
        pt_p = idx if page_table is None else page_table.data_ptr()
        split(stream, (q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), idx, len_p, w_p, pt_p, o, lse_p, *part,
                       *self.split_tail))  # fmt: skip
        if merge is not None:
            merge(stream, (*part, o, lse_p, *self.merge_tail))
        del work  # held until both launches are queued


def _raw_stream(device_index: int) -> int:
    """The current CUDA stream of a device as a raw handle (no Stream object)."""
    return torch._C._cuda_getCurrentRawStream(device_index)


def _capturing() -> bool:
    """Whether the current stream is capturing a CUDA graph."""
    return torch._C._cuda_isCurrentStreamCapturing()


def compiled_launcher(kernel, args: tuple, grid: tuple[int, ...], options: dict, mode: str):
    """(a callable launching kernel on grid with positional args, its compiled form or None): the compiled
    form's runner where available (no per-call specialisation or cache lookup), else Triton's JIT entry."""
    jit = functools.partial(kernel[grid], **options)
    if mode == "jit":
        return jit, None
    compiled = kernel.warmup(*args, grid=grid, **options)
    if hasattr(compiled, "result"):  # compiled asynchronously
        compiled = compiled.result()
    try:
        return compiled[tuple(grid) + (1,) * (3 - len(grid))], compiled
    except (AttributeError, TypeError) as err:  # a Triton whose compiled kernels launch differently
        warnings.warn(f"sparse_decode launches through Triton's JIT entry (slower on the host): {err}", stacklevel=2)
        return jit, None

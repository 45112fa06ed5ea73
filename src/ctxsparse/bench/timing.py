"""Cold-L2 GPU timing: evict the L2 cache before every iteration, time each with CUDA events, report medians.

Memory-bound kernels that reread the same inputs would otherwise measure the 50 MB L2 rather than HBM.
Before each timed call a buffer several times the L2 size is streamed through (read by default, so
the cache is left holding clean lines; "write" zeroes it instead, which leaves dirty lines whose
write-back then competes with the timed kernel). A short device spin follows, so the host has queued
the timed call before the GPU reaches it and launch overhead stays out of the events.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

FLUSH_MODES: tuple[str, ...] = ("read", "write", "none")
SPIN_CYCLES = 400_000  # ~0.2 ms at H100 clocks: longer than the host needs to enqueue one call


@dataclass(frozen=True)
class Timing:
    """Per-iteration device times of one callable, in microseconds."""

    median_us: float
    p10_us: float
    p90_us: float
    iters: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def l2_bytes(device: torch.device | str | None = None) -> int:
    """The GPU's L2 size in bytes (50 MB on an H100), or 64 MiB where the driver does not say."""
    props = torch.cuda.get_device_properties(device or torch.cuda.current_device())
    return int(getattr(props, "L2_cache_size", 0) or 64 * 2**20)


def summarize(samples_us: list[float]) -> Timing:
    """Median and 10th/90th percentiles of a list of per-iteration times."""
    if not samples_us:
        raise ValueError("no timing samples")
    ordered = sorted(samples_us)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return Timing(statistics.median(ordered), pick(0.1), pick(0.9), len(ordered))


class L2Flusher:
    """Streams a buffer of `multiple` x L2 bytes through the cache; reused across timings."""

    def __init__(
        self, device: torch.device | str | None = None, mode: str = "read", multiple: int = 4, nbytes: int | None = None
    ) -> None:
        if mode not in FLUSH_MODES:
            raise ValueError(f"flush mode must be one of {FLUSH_MODES}; got {mode!r}.")
        self.mode = mode
        size = 0 if mode == "none" else nbytes or multiple * l2_bytes(device)
        self.buffer = torch.ones(size // 8, dtype=torch.int64, device=device or "cuda")
        self.sink = torch.empty((), dtype=torch.int64, device=self.buffer.device)

    def __call__(self) -> None:
        if self.mode == "read":
            torch.sum(self.buffer, dim=0, out=self.sink)  # every line read, nothing dirty left behind
        elif self.mode == "write":
            self.buffer.zero_()


def cold_l2_time(
    fn: Callable[[], object], flusher: L2Flusher, iters: int = 50, warmup: int = 5, spin: bool = True
) -> Timing:
    """Median device time of fn() with the L2 evicted before each call (fn must only enqueue GPU work)."""
    for _ in range(warmup):
        flusher()
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        flusher()
        if spin:
            torch.cuda._sleep(SPIN_CYCLES)
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return summarize([1000.0 * s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)])


def copy_bandwidth_tbps(device: torch.device | str | None = None, nbytes: int = 2 * 2**30, iters: int = 20) -> float:
    """Device-to-device copy rate in TB/s, counting bytes read plus bytes written: the practical ceiling."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device or "cuda").normal_()
    dst = torch.empty_like(src)
    timing = cold_l2_time(lambda: dst.copy_(src), L2Flusher(src.device, "none"), iters=iters, warmup=3)
    return 2 * nbytes / (timing.median_us * 1e-6) / 1e12

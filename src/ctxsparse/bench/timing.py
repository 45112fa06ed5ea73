"""Cold-L2 GPU timing: evict the L2 cache before every iteration, time each with CUDA events, report medians.

Memory-bound kernels that reread the same inputs would otherwise measure the 50 MB L2 rather than HBM.
Before each timed call a buffer several times the L2 size is streamed through (read by default, so
the cache is left holding clean lines; "write" zeroes it instead, which leaves dirty lines whose
write-back then competes with the timed kernel). The call is replayed from a CUDA graph, as decode
loops run in serving, and a short device spin lets the host queue it before the GPU gets there.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

FLUSH_MODES: tuple[str, ...] = ("read", "write", "none")
SPIN_CYCLES = 400_000  # ~0.2 ms at H100 clocks: longer than the host needs to enqueue one call


@dataclass(frozen=True)
class Timing:
    """Per-iteration device times of one callable, in microseconds; graphed: replayed from a CUDA graph."""

    median_us: float
    p10_us: float
    p90_us: float
    iters: int
    graphed: bool = False

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def l2_bytes(device: torch.device | str | None = None) -> int:
    """The GPU's L2 size in bytes (50 MB on an H100), or 64 MiB where the driver does not say."""
    props = torch.cuda.get_device_properties(device or torch.cuda.current_device())
    return int(getattr(props, "L2_cache_size", 0) or 64 * 2**20)


def summarize(samples_us: list[float], graphed: bool = False) -> Timing:
    """Median and 10th/90th percentiles of a list of per-iteration times."""
    if not samples_us:
        raise ValueError("no timing samples")
    ordered = sorted(samples_us)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return Timing(statistics.median(ordered), pick(0.1), pick(0.9), len(ordered), graphed)


def as_graph(fn: Callable[[], object]) -> Callable[[], object] | None:
    """fn captured in a CUDA graph (its replay), or None where fn cannot be captured."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()  # compile and allocate outside the capture
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph.replay
    except Exception:  # any capture failure: time the eager calls instead
        torch.cuda.synchronize()
        return None


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
    fn: Callable[[], object], flusher: L2Flusher, iters: int = 50, warmup: int = 5, graph: bool = True
) -> Timing:
    """Median device time of fn() with the L2 evicted before each call (fn must only enqueue GPU work).

    With graph=True fn is captured once and its CUDA graph replayed, so host work inside fn (argument
    checks, launch overhead) never shows; fn is timed eagerly where it cannot be captured.
    """
    call = (as_graph(fn) if graph else None) or fn
    for _ in range(warmup):
        flusher()
        call()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        flusher()
        torch.cuda._sleep(SPIN_CYCLES)  # the GPU spins while the host queues the call: no launch gap
        starts[i].record()
        call()
        ends[i].record()
    torch.cuda.synchronize()
    samples = [1000.0 * s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]
    return summarize(samples, graphed=call is not fn)


def copy_bandwidth_tbps(device: torch.device | str | None = None, nbytes: int = 2 * 2**30, iters: int = 20) -> float:
    """Device-to-device copy rate in TB/s, counting bytes read plus bytes written: the practical ceiling."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device or "cuda").normal_()
    dst = torch.empty_like(src)
    timing = cold_l2_time(lambda: dst.copy_(src), L2Flusher(src.device, "none"), iters=iters, warmup=3, graph=False)
    return 2 * nbytes / (timing.median_us * 1e-6) / 1e12


@dataclass(frozen=True)
class EagerTiming:
    """Un-graphed calls on an idle GPU: device µs between CUDA events around the call (host work inside the
    call shows when it outlasts the kernels), and host µs the Python call itself took."""

    device: Timing
    host_median_us: float

    def as_dict(self) -> dict[str, float]:
        return self.device.as_dict() | {"host_median_us": self.host_median_us}


def eager_time(fn: Callable[[], object], flusher: L2Flusher, iters: int = 50, warmup: int = 5) -> EagerTiming:
    """Median time of fn() called eagerly (no graph) on an idle GPU with a cold L2.

    Before each call the L2 is flushed and the device drained, so the start event fires at once and the
    kernels wait for the host: the events span the host's launch work plus the device time. perf_counter
    around the same call gives the host time alone.
    """
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    host = []
    for start, end in events:
        flusher()
        torch.cuda.synchronize()
        start.record()
        t0 = time.perf_counter()
        fn()
        host.append(1e6 * (time.perf_counter() - t0))
        end.record()
    torch.cuda.synchronize()
    device = summarize([1000.0 * s.elapsed_time(e) for s, e in events])
    return EagerTiming(device, statistics.median(host))

"""Pick the fastest of several ways to run the same call by timing each one, and remember why.

A baseline is only honest when it runs its best configuration, and which one is best depends on the GPU
and the shape (FlashInfer's tensor-core decode wins at some GQA group sizes and loses at others), so it is
measured, not assumed. The timer is a parameter: CUDA events on a GPU, a fake in CPU tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Timer = Callable[[Callable[[], object]], float]


@dataclass(frozen=True)
class FastestChoice:
    """The winning candidate's name, every candidate's time (µs), and the error of each one that failed."""

    winner: str
    times_us: dict[str, float]
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"winner": self.winner, "times_us": dict(self.times_us), "errors": dict(self.errors)}


def pick_fastest(candidates: Mapping[str, Callable[[], object]], timer: Timer) -> FastestChoice:
    """Time every candidate with timer (µs per call) and return the fastest; ties go to the earlier one.

    A candidate that raises is left out with its error; when all of them fail, RuntimeError names each error.
    """
    if not candidates:
        raise ValueError("pick_fastest needs at least one candidate.")
    times: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, call in candidates.items():
        try:
            times[name] = float(timer(call))
        except Exception as err:  # a configuration the library refuses for this shape is not the winner
            errors[name] = f"{type(err).__name__}: {err}"
    if not times:
        raise RuntimeError("every candidate failed: " + "; ".join(f"{n}: {e}" for n, e in errors.items()))
    winner = min(times, key=lambda name: times[name])  # min keeps the first of equal times
    return FastestChoice(winner, times, errors)


def cuda_event_timer(iters: int = 10, warmup: int = 2) -> Timer:
    """A timer for pick_fastest: median µs of `iters` calls, each between two CUDA events, after `warmup` calls."""
    import torch

    def timer(call: Callable[[], object]) -> float:
        for _ in range(warmup):
            call()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        for start, end in zip(starts, ends, strict=True):
            start.record()
            call()
            end.record()
        torch.cuda.synchronize()
        samples = sorted(1000.0 * s.elapsed_time(e) for s, e in zip(starts, ends, strict=True))
        return samples[len(samples) // 2]

    return timer

"""The FlashInfer anchors of a benchmark point: plan both decode settings, time each, keep the faster.

Every ratio a benchmark prints is against the strongest configuration a user could pick, so the anchor's
two use_tensor_cores settings are both timed with the benchmark's own timer (cold L2, graph replay) and
the record keeps both times and the winner. A shape FlashInfer refuses gives a reason, not a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ctxsparse.bench.timing import Timing


@dataclass
class Anchor:
    """A planned FlashInfer runner and its winning timing, or the reason there is none."""

    runner: object | None = None
    timing: Timing | None = None
    record: dict = field(default_factory=dict)
    reason: str | None = None

    @property
    def median_us(self) -> float | None:
        return None if self.timing is None else self.timing.median_us


def plan_anchor(
    runner: object, plan: Callable[[object], None], run: Callable[[object], Callable[[], object]], time_call
) -> Anchor:
    """plan(runner) with runner.timer set to time_call (a callable -> Timing), so that both settings are
    timed; returns the winner's Timing and a record of the choice with each setting's Timing.

    runner: a FlashInferDense or FlashInferVectorSparse (anything with timer, choice, setting, choice_record());
    run(runner): the call to time once planned (timed directly when only one setting was planned).
    """
    timings: list[Timing] = []

    def timer(call: Callable[[], object]) -> float:
        timing = time_call(call)
        timings.append(timing)
        return timing.median_us

    runner.timer = timer
    try:
        plan(runner)
        timed = list(runner.choice.times_us)  # the settings that ran, in the order they were timed
        by_setting = dict(zip(timed, timings, strict=True))
        if runner.setting not in by_setting:  # one setting only: nothing was compared
            by_setting[runner.setting] = time_call(run(runner))
    except Exception as err:  # FlashInfer refuses this shape: the row says why and the grid goes on
        return Anchor(reason=f"{type(err).__name__}: {err}")
    record = runner.choice_record() | {"timings": {n: t.as_dict() for n, t in by_setting.items()}}
    return Anchor(runner, by_setting[runner.setting], record)

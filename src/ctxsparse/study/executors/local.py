"""The local executor: units run one after another in this process, each row written as it finishes."""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm

from ctxsparse.study.executors.units import UnitWorker, WorkUnit
from ctxsparse.study.store import ResultRow


class LocalExecutor:
    """Runs units with one UnitWorker in the calling process (the study's default)."""

    name = "local"

    def __init__(self, worker: UnitWorker, progress: bool = True) -> None:
        self.worker = worker
        self.progress = progress

    @property
    def prefills(self) -> int:
        return self.worker.prefills

    def execute(self, units: list[WorkUnit], write: Callable[[ResultRow], None]) -> None:
        """Run every unit; write(row) is called once per finished row, in the order rows finish."""
        bar = tqdm(total=len(units), unit="unit", disable=not self.progress, dynamic_ncols=True, desc="study")
        rows, total = 0, sum(u.rows for u in units)
        try:
            for unit in units:
                bar.set_postfix_str(f"{unit.label()} | rows {rows}/{total}", refresh=False)
                for row in self.worker.run(unit):
                    write(row)
                    rows += 1
                    bar.set_postfix_str(f"{unit.label()} | rows {rows}/{total}")
                bar.update(1)
        finally:
            bar.close()

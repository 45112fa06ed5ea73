"""Before a study resumes: are the stored rows still about the texts the task generators make now?

A row records the sample_hash of the text it was decoded on. When a generator changes (a new ctxsparse,
an edited task file, another --truncate rule), rows of the same sample index may describe another text.
check_samples regenerates the samples the database holds rows for, records their hashes (the reference
the report pairs against) and finds the stale rows; with rerun=True it deletes them so the run redoes them.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ctxsparse.study.pairing import Freshness, sample_key, split_stale
from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.runner import sample_hash
from ctxsparse.study.store import SampleKey, StudyStore


@dataclass
class SampleCheck:
    """What check_samples found: stale rows of this plan, and how many of them it deleted."""

    freshness: Freshness
    deleted: int

    @property
    def stale(self) -> int:
        return len(self.freshness.stale)


def current_hashes(
    rows: list[dict[str, Any]], plan: StudyPlan, tasks: dict[str, Any], tokenizer_of: Callable[[str], Any]
) -> dict[SampleKey, str]:
    """The hash of every sample these rows are about, as the generators make it now."""
    wanted: dict[tuple[str, str, int], int] = defaultdict(int)
    for row in rows:
        key = (row["model"], row["task"], int(row["length"]))
        wanted[key] = max(wanted[key], int(row["sample"]) + 1)
    out: dict[SampleKey, str] = {}
    for model in dict.fromkeys(m for m, _, _ in wanted):
        tokenizer = tokenizer_of(model)
        for (m, task, length), count in wanted.items():
            if m != model:
                continue
            for i, sample in enumerate(tasks[task].generate(tokenizer, length, count, seed=plan.seed)):
                out[(model, task, length, i, plan.seed)] = sample_hash(sample)
    return out


def check_samples(
    store: StudyStore,
    plan: StudyPlan,
    tasks: dict[str, Any],
    tokenizer_of: Callable[[str], Any],
    rerun: bool = False,
) -> SampleCheck:
    """Find (and with rerun=True delete) stored rows of this plan whose text the generator no longer makes."""
    rows = [
        r
        for r in store.rows()
        if r["model"] in plan.models and r["task"] in tasks and r["length"] in plan.lengths and r["seed"] == plan.seed
    ]
    if rows:
        print(f"checking the {len(rows)} stored rows of this study against the task generators ...", file=sys.stderr)
    hashes = current_hashes(rows, plan, tasks, tokenizer_of)
    if hashes:
        store.record_sample_hashes(hashes)
    freshness = split_stale(rows, hashes)
    deleted = 0
    if rerun and freshness.stale:
        keys = [(r["config_hash"], r["task"], r["length"], r["sample"], r["seed"]) for r in freshness.stale]
        deleted = store.delete(keys)
    return SampleCheck(freshness, deleted)


def describe(check: SampleCheck, db: object) -> str:
    """One line for the user about stale rows ('' when there are none)."""
    if not check.stale:
        return ""
    if check.deleted:
        samples = len({sample_key(r) for r in check.freshness.stale})
        return f"{db}: deleted {check.deleted} stale rows ({samples} samples) to run them again (--rerun-stale)."
    return check.freshness.message(db)


def check_file_tasks(plan: StudyPlan, tasks: dict[str, Any], tokenizer: Any) -> None:
    """Measure the rows of file tasks now (after the tokenizer loads, before the database is touched), so a
    too long or malformed row is refused before any work."""
    from ctxsparse.tasks.files import FileTask

    for task in tasks.values():
        if isinstance(task, FileTask):
            for length in plan.lengths:
                task.generate(tokenizer, length, plan.samples, seed=plan.seed)  # as many as the runner makes

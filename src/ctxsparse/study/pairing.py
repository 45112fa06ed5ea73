"""Which rows may be compared: a sparse row pairs with the dense row of the same sample only when both
were made from the same text (equal sample_hash), and rows whose text the generator no longer makes
(stale: a changed generator, an older ctxsparse) are left out of every comparison, with a count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ctxsparse.study.store import SampleKey


def sample_key(row: dict[str, Any]) -> SampleKey:
    """(model, task, length, sample, seed): what a row's sample is, whatever the configuration."""
    return (row["model"], row["task"], int(row["length"]), int(row["sample"]), int(row["seed"]))


@dataclass
class Freshness:
    """Rows split by whether their sample_hash is what the generator makes now (when that is known)."""

    fresh: list[dict[str, Any]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)

    def message(self, db: object) -> str:
        """One line for the user, or '' when nothing is stale."""
        if not self.stale:
            return ""
        samples = len({sample_key(r) for r in self.stale})
        return (
            f"{db}: {len(self.stale)} rows ({samples} samples) were made from texts the task generators no longer "
            "produce (stale); they are left out of tables and pairing. Run the study again with --rerun-stale "
            "to replace them."
        )


def split_stale(rows: Iterable[dict[str, Any]], current: dict[SampleKey, str]) -> Freshness:
    """Stale rows: those whose sample_hash differs from the one recorded in current for their sample."""
    out = Freshness()
    for row in rows:
        expected = current.get(sample_key(row))
        (out.stale if expected is not None and row.get("sample_hash") != expected else out.fresh).append(row)
    return out


def paired_with_dense(
    rows: Iterable[dict[str, Any]], dense: dict[tuple[int, int], dict[str, Any]]
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], int]:
    """(pairs of (row, dense row) of the same (sample, seed) and sample_hash, how many rows had a dense row
    of another text). Rows without a dense row at all are neither paired nor counted as mismatched."""
    pairs, mismatched = [], 0
    for row in rows:
        reference = dense.get((int(row["sample"]), int(row["seed"])))
        if reference is None:
            continue
        if reference.get("sample_hash") == row.get("sample_hash"):
            pairs.append((row, reference))
        else:
            mismatched += 1
    return pairs, mismatched

"""Result rows -> aggregated cells (one per model, task, length, method, sparsity) and the tables built on them.

Retention is paired: a sparse cell's accuracy divided by the dense accuracy on the same (sample, seed)
pairs with equal sample_hash (study/pairing.py), so a study never compares different texts. So is the
difference to dense: the mean of (sparse - dense) over those pairs with a 95% interval and p-value (exact
McNemar for 0/1 scores, paired bootstrap for fractions).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ctxsparse.study.pairing import paired_with_dense
from ctxsparse.study.plan import DENSE
from ctxsparse.study.stats import mean_interval, mean_or_none, paired_difference

FIDELITY = ("density", "mass_recall", "output_error", "kl", "top1_agreement")
TIMINGS = ("prefill_s", "decode_s", "new_tokens", "context_tokens")


@dataclass
class Cell:
    """Aggregate of the rows of one (model, dtype, phase, task, length, method spec, sparsity)."""

    model: str
    dtype: str
    phase: str
    task: str
    length: int
    method: str
    spec: str
    sparsity: float
    n: int
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    ci_method: str
    retention: float | None
    dense_accuracy: float | None
    density: float | None
    mass_recall: float | None
    output_error: float | None
    kl: float | None
    top1_agreement: float | None
    prefill_s: float | None
    decode_s: float | None
    new_tokens: float | None
    context_tokens: float | None
    pairs: int = 0
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    p_value: float | None = None
    diff_method: str = "none"

    @property
    def is_dense(self) -> bool:
        return self.method == DENSE

    @property
    def label(self) -> str:
        """Row label in tables: 'dense' or 'oracle_topk @ 10x' (phase added when it is 'decode')."""
        if self.is_dense:
            return self.spec
        phase = " [decode]" if self.phase == "decode" else ""
        return f"{self.spec} @ {self.sparsity:g}x{phase}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _group_key(row: dict[str, Any]) -> tuple:
    return (row["model"], row["dtype"], row["task"], row["length"], row["phase"], row["spec"], row["sparsity"])


def aggregate(rows: Iterable[dict[str, Any]]) -> list[Cell]:
    """One Cell per configuration and (task, length), dense cells first in each (model, dtype, task, length)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    order: dict[tuple, int] = {}
    for row in rows:
        key = _group_key(row)
        order.setdefault(key, len(order))
        groups[key].append(row)
    dense_rows: dict[tuple, dict[tuple[int, int], dict[str, Any]]] = defaultdict(dict)
    for key, members in groups.items():
        if members[0]["method"] == DENSE and members[0]["spec"] == DENSE:
            for r in members:
                dense_rows[key[:4]][(r["sample"], r["seed"])] = r
    cells = []
    for key, members in groups.items():
        model, dtype, task, length, phase, spec, sparsity = key
        ci = mean_interval([r["score"] for r in members])
        pairs, _ = paired_with_dense(members, dense_rows.get(key[:4], {}))
        paired = [(r["score"], d["score"]) for r, d in pairs]
        dense_acc = sum(d for _, d in paired) / len(paired) if paired else None
        retention = sum(s for s, _ in paired) / len(paired) / dense_acc if dense_acc else None
        is_dense = members[0]["method"] == DENSE and spec == DENSE
        diff = paired_difference([s for s, _ in paired], [d for _, d in paired]) if paired and not is_dense else None
        cells.append(
            Cell(
                model=model,
                dtype=dtype,
                phase=phase,
                task=task,
                length=length,
                method=members[0]["method"],
                spec=spec,
                sparsity=sparsity,
                n=ci.n,
                accuracy=ci.mean,
                ci_low=ci.low,
                ci_high=ci.high,
                ci_method=ci.method,
                retention=retention,
                dense_accuracy=dense_acc,
                pairs=len(paired),
                **{k: mean_or_none([r[k] for r in members]) for k in FIDELITY + TIMINGS},
                **_paired_fields(diff),
            )
        )
    cells.sort(key=lambda c: (c.model, c.dtype, c.task, c.length, not c.is_dense, order[_cell_key(c)]))
    return cells


def _paired_fields(diff) -> dict[str, Any]:
    if diff is None:
        return {}
    return {
        "diff": diff.mean,
        "diff_low": diff.low,
        "diff_high": diff.high,
        "p_value": diff.p_value,
        "diff_method": diff.method,
    }


def _cell_key(c: Cell) -> tuple:
    return (c.model, c.dtype, c.task, c.length, c.phase, c.spec, c.sparsity)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table for terminals (first column left, the rest right aligned)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts)

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def groups_by_model(cells: Sequence[Cell]) -> dict[tuple[str, str], list[Cell]]:
    """(model, dtype) -> its cells, in order."""
    out: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for c in cells:
        out[(c.model, c.dtype)].append(c)
    return dict(out)


def summary_grid(cells: Sequence[Cell]) -> tuple[list[str], list[list[str]]]:
    """Accuracy (%) with one row per method @ sparsity (dense first) and one column per task (@ length)."""
    lengths = sorted({c.length for c in cells})
    columns = list(dict.fromkeys((c.task, c.length) for c in sorted(cells, key=lambda c: (c.length, c.task))))
    names = [f"{t}@{n}" if len(lengths) > 1 else t for t, n in columns]
    labels = list(dict.fromkeys(c.label for c in sorted(cells, key=_row_order)))
    by = {(c.label, c.task, c.length): c for c in cells}
    rows = []
    for label in labels:
        accs = [by.get((label, t, n)) for t, n in columns]
        present = [c.accuracy for c in accs if c is not None and c.accuracy is not None]
        mean = sum(present) / len(present) if present else None
        n = sum(c.n for c in accs if c is not None)
        rows.append([label, *(_with_n(c) for c in accs), _pct(mean), str(n)])
    return ["method", *(f"{name} (n)" for name in names), "mean", "n (all tasks)"], rows


def _with_n(c: Cell | None) -> str:
    return "–" if c is None else f"{_pct(c.accuracy)} ({c.n})"


def _row_order(c: Cell) -> tuple:
    return (not c.is_dense, c.phase, c.spec, c.sparsity)


DETAIL_HEADER = [
    "method",
    "sparsity",
    "n",
    "accuracy",
    "95% CI",
    "retention",
    "pairs",
    "Δ vs dense (paired)",
    "p",
    "density",
    "mass recall",
    "output err",
    "KL",
    "top-1 agree",
]


def detail_rows(cells: Sequence[Cell]) -> list[list[str]]:
    """The per-task table: every cell of one (model, task, length), dense first."""
    out = []
    for c in sorted(cells, key=_row_order):
        ci = "–" if c.ci_low is None else f"[{_pct(c.ci_low)}, {_pct(c.ci_high)}]"
        out.append(
            [
                c.spec if c.is_dense else f"{c.spec}{' [decode]' if c.phase == 'decode' else ''}",
                f"{c.sparsity:g}x",
                str(c.n),
                _pct(c.accuracy),
                ci,
                _fmt(c.retention, 2),
                "–" if c.is_dense else str(c.pairs),
                _diff_text(c),
                _p_text(c),
                _fmt(c.density, 4),
                _fmt(c.mass_recall),
                _fmt(c.output_error),
                _fmt(c.kl, 4),
                _fmt(c.top1_agreement),
            ]
        )
    return out


def _diff_text(c: Cell) -> str:
    """'-12.0 [-20.5, -3.1] (n=40)' in accuracy points; '–' for dense or unpaired cells."""
    if c.diff is None:
        return "–"
    return f"{100 * c.diff:+.1f} [{100 * c.diff_low:+.1f}, {100 * c.diff_high:+.1f}] (n={c.pairs})"


def _p_text(c: Cell) -> str:
    if c.p_value is None:
        return "–"
    test = "McNemar" if c.diff_method == "mcnemar" else "bootstrap"
    return f"{c.p_value:.3g} ({test})"


def detail_groups(cells: Sequence[Cell]) -> dict[tuple[str, str, str, int], list[Cell]]:
    """(model, dtype, task, length) -> cells."""
    out: dict[tuple[str, str, str, int], list[Cell]] = defaultdict(list)
    for c in cells:
        out[(c.model, c.dtype, c.task, c.length)].append(c)
    return dict(out)


def summary_text(cells: Sequence[Cell]) -> str:
    """The terminal summary: per model, accuracy (%) per method @ sparsity and task."""
    blocks = []
    for (model, dtype), members in groups_by_model(cells).items():
        header, rows = summary_grid(members)
        blocks.append(f"{model} ({dtype}) — accuracy %\n{text_table(header, rows)}")
    return "\n\n".join(blocks) if blocks else "(no results yet)"

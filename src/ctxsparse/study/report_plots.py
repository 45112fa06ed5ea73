"""Report plots (matplotlib's Agg canvas): accuracy, retention, difference, mass recall and KL against sparsity.

One PNG per (model, dtype, metric); inside it one panel per (length, task), one line per sparse method,
and for accuracy the dense result as a dashed horizontal reference with its CI band. The paired difference
to dense is drawn with its 95% band around a zero line. Where dense scores 0 the retention panel says that
retention is undefined instead of showing empty axes. Mass recall and KL are plotted only where some sparse
row measured them (the engine path measures KL but no attention mass recall).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ctxsparse.study.report_tables import Cell, groups_by_model

METRICS = {
    "accuracy": ("accuracy", "accuracy"),
    "retention": ("retention", "retention (sparse / dense)"),
    "difference": ("diff", "accuracy − dense (paired, 95% CI)"),
    "mass_recall": ("mass_recall", "attention mass recall"),
    "kl": ("kl", "KL(dense || sparse) per token"),
}
# Plots drawn only when some sparse cell has the metric (the engine path measures no attention mass recall).
OPTIONAL = {"mass_recall", "kl"}


def slug(text: str) -> str:
    """A file-name-safe version of a model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def _series(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    out: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        if not c.is_dense:
            out[c.label.split(" @ ")[0] + (" [decode]" if c.phase == "decode" else "")].append(c)
    return {k: sorted(v, key=lambda c: c.sparsity) for k, v in out.items()}


def _panel(ax, cells: Sequence[Cell], metric: str, title: str) -> None:
    attr, ylabel = METRICS[metric]
    dense = next((c for c in cells if c.is_dense and c.spec == "dense"), None)
    sparsities = sorted({c.sparsity for c in cells if not c.is_dense})
    if metric == "retention" and not any(c.retention is not None for c in cells if not c.is_dense):
        why = "dense scores 0 here" if dense is not None and dense.accuracy == 0 else "no paired dense rows"
        ax.text(0.5, 0.5, f"retention undefined:\n{why}", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    for name, series in _series(cells).items():
        xs = [c.sparsity for c in series if getattr(c, attr) is not None]
        ys = [getattr(c, attr) for c in series if getattr(c, attr) is not None]
        if not xs:
            continue
        line = ax.plot(xs, ys, marker="o", label=name)[0]
        if metric in ("accuracy", "difference"):
            low, high = ("ci_low", "ci_high") if metric == "accuracy" else ("diff_low", "diff_high")
            lows = [getattr(c, low) for c in series if getattr(c, attr) is not None]
            highs = [getattr(c, high) for c in series if getattr(c, attr) is not None]
            ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.12, linewidth=0)
    if metric == "accuracy" and dense is not None and dense.accuracy is not None:
        ax.axhline(dense.accuracy, color="black", linestyle="--", linewidth=1.2, label="dense")
        ax.axhspan(dense.ci_low, dense.ci_high, color="black", alpha=0.06, linewidth=0)
    elif metric in ("retention", "mass_recall"):
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0, label="dense")
    elif metric in ("difference", "kl"):
        ax.axhline(0.0, color="black", linestyle="--", linewidth=1.0, label="dense")
    if sparsities and min(sparsities) > 0 and max(sparsities) / min(sparsities) >= 4:
        ax.set_xscale("log")
    if sparsities:
        ax.set_xticks(sparsities)
        ax.set_xticklabels([f"{s:g}x" for s in sparsities])
        ax.minorticks_off()
    if metric == "difference":
        ax.set_ylim(-1.03, 1.03)
    elif metric == "kl":
        ax.set_ylim(bottom=0.0)
    elif metric != "retention":
        ax.set_ylim(-0.03, 1.03)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("sparsity (N / k)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


PANELS_PER_ROW = 4


def plot_metric(cells: Sequence[Cell], metric: str, path: Path, title: str) -> Path:
    """One figure of `metric` vs sparsity for the cells of one model; panels per (length, task)."""
    panels: dict[tuple[int, str], list[Cell]] = defaultdict(list)
    for c in cells:
        panels[(c.length, c.task)].append(c)
    keys = sorted(panels)  # by length, then task
    # Panels wrap into rows of at most PANELS_PER_ROW, so many tasks stay readable.
    cols = min(PANELS_PER_ROW, len(keys))
    rows = -(-len(keys) // cols)
    # Agg canvas on a bare Figure: no pyplot state, and no change to the user's global matplotlib backend.
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (n, t) in zip(axes.flat, keys, strict=False):
        _panel(ax, panels[(n, t)], metric, f"{t} @ {n} tokens")
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_axis_off()
    handles: dict[str, object] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(4, len(handles)))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    return path


def write_plots(cells: Sequence[Cell], out_dir: Path) -> list[Path]:
    """All report plots; returns their paths (accuracy, retention, difference, mass recall, KL per model)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (model, dtype), members in groups_by_model(cells).items():
        name = slug(model) + ("" if dtype == "auto" else f"-{slug(dtype)}")
        for metric, (attr, ylabel) in METRICS.items():
            if metric in OPTIONAL and not any(getattr(c, attr) is not None for c in members if not c.is_dense):
                continue
            title = f"{model}: {ylabel} vs sparsity"
            paths.append(plot_metric(members, metric, out_dir / f"{metric}_vs_sparsity-{name}.png", title))
    return paths

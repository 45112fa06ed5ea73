"""The agentic report: resolved rate with 95% CIs per (method, sparsity), and per-turn fidelity against context
length and turn number, from a database written by `ctxsparse agent` (read with plain SQL, never written).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ctxsparse.study.report_html import CSS
from ctxsparse.study.report_plots import slug
from ctxsparse.study.report_tables import markdown_table, text_table
from ctxsparse.study.stats import mean_interval, mean_or_none

NOTES = (
    "Resolved: the task's hidden tests pass on a fresh copy of its repository with the episode's final diff "
    "applied, whatever ended the episode (submission, turn limit, format errors).",
    "95% CI of the resolved rate: Wilson score interval over episodes.",
    "Per turn: the history is prefilled densely into the kept KV cache; the newest message and the reply are "
    "decoded sparsely (phase 'question'). Mass recall = share of the dense attention probability on the selected "
    "tokens; top-1 agreement = share of the reply's tokens (teacher forced) where sparse and dense pick the same.",
    "Isolation: 'namespaces' = user, network, PID and mount namespaces with a private read-only root; "
    "'network' = user, network and PID namespaces (the file system is the caller's); 'rlimits' = resource limits "
    "only. 'processes' says what bounds the process count: a pids cgroup, RLIMIT_NPROC, or nothing (root "
    "without a writable cgroup).",
)
HEADER = ["method", "sparsity", "episodes", "resolved", "95% CI", "turns", "final context", "exits", "isolation"]


@dataclass
class AgentCell:
    """Episodes of one (model, method, sparsity, phase)."""

    model: str
    method: str
    sparsity: float
    phase: str
    episodes: int
    resolved: int
    rate: float
    ci_low: float
    ci_high: float
    mean_turns: float
    mean_final_context: float
    exits: dict[str, int] = field(default_factory=dict)
    isolation: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.method if self.sparsity == 1 else f"{self.method} @ {self.sparsity:g}x"


@dataclass
class AgentReport:
    """Where the agentic report went, and its cells."""

    out_dir: Path
    markdown: Path
    csv: Path
    json: Path
    html: Path
    plots: list[Path]
    cells: list[AgentCell]

    def summary(self) -> str:
        rows = [_row(c) for c in self.cells]
        return text_table(HEADER, rows)


def has_episodes(db: str | os.PathLike) -> bool:
    """True when `db` is a SQLite file with an episodes table (written by `ctxsparse agent`)."""
    if not Path(db).is_file():
        return False
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='episodes'").fetchone() is not None
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def _read(db: str | os.PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        episodes = [dict(r) for r in conn.execute("SELECT * FROM episodes ORDER BY id")]
        turns = [
            dict(r)
            for r in conn.execute(
                "SELECT t.*, e.model, e.method, e.sparsity, e.phase FROM turns t JOIN episodes e ON e.id = t.episode_id"
            )
        ]
    finally:
        conn.close()
    return episodes, turns


def aggregate(episodes: Sequence[dict[str, Any]]) -> list[AgentCell]:
    """One cell per (model, method, sparsity, phase), dense first, then by method and sparsity."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in episodes:
        groups[(e["model"], e["method"], float(e["sparsity"]), e["phase"])].append(e)
    cells = []
    for (model, method, sparsity, phase), members in groups.items():
        ci = mean_interval([float(bool(e["resolved"])) for e in members])
        exits: dict[str, int] = defaultdict(int)
        for e in members:
            exits[str(e["exit_reason"]).split(":")[0]] += 1
        cells.append(
            AgentCell(
                model,
                method,
                sparsity,
                phase,
                len(members),
                sum(bool(e["resolved"]) for e in members),
                ci.mean,
                ci.low,
                ci.high,
                sum(e["turns"] for e in members) / len(members),
                sum(e["final_context_tokens"] for e in members) / len(members),
                dict(exits),
                sorted({e["isolation"] for e in members}),
            )
        )
    return sorted(cells, key=lambda c: (c.model, c.sparsity != 1, c.method, c.sparsity))


def _row(c: AgentCell) -> list[str]:
    exits = ", ".join(f"{k} {v}" for k, v in sorted(c.exits.items()))
    return [
        c.method,
        f"{c.sparsity:g}x",
        str(c.episodes),
        f"{c.resolved} ({100 * c.rate:.0f}%)",
        f"{100 * c.ci_low:.0f}–{100 * c.ci_high:.0f}%",
        f"{c.mean_turns:.1f}",
        f"{c.mean_final_context:.0f}",
        exits,
        ", ".join(c.isolation),
    ]


def _bins(values: Sequence[float], count: int = 8) -> list[float]:
    lo, hi = min(values), max(values)
    step = (hi - lo) / count or 1.0
    return [lo + step * i for i in range(count + 1)]


def _fidelity_plot(turns: list[dict[str, Any]], x_key: str, xlabel: str, path: Path, title: str) -> Path | None:
    """Mass recall and top-1 agreement (means per x bin) against context tokens or turn number."""
    sparse = [t for t in turns if t["method"] != "dense" and t["mass_recall"] is not None]
    if not sparse:
        return None
    fig = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in sparse:
        series[f"{t['method']} @ {float(t['sparsity']):g}x"].append(t)
    for ax, metric, ylabel in (
        (axes[0], "mass_recall", "attention mass recall"),
        (axes[1], "top1_agreement", "top-1 agreement"),
    ):
        for name, rows in sorted(series.items()):
            if x_key == "turn":
                xs = sorted({r["turn"] for r in rows})
                ys = [mean_or_none([r[metric] for r in rows if r["turn"] == x]) for x in xs]
            else:
                edges = _bins([r[x_key] for r in rows])
                xs, ys = [], []
                for a, b in zip(edges, edges[1:], strict=False):
                    inside = [r[metric] for r in rows if a <= r[x_key] <= b]
                    if mean_or_none(inside) is not None:
                        xs.append((a + b) / 2)
                        ys.append(mean_or_none(inside))
            points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=name)
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(handles)))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 0.93))
    fig.savefig(path, dpi=110)
    return path


def _resolved_plot(cells: list[AgentCell], path: Path, title: str) -> Path:
    fig = Figure(figsize=(6, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    labels = [c.label for c in cells]
    ax.bar(range(len(cells)), [c.rate for c in cells], color="#4c72b0")
    ax.errorbar(
        range(len(cells)),
        [c.rate for c in cells],
        yerr=[[max(0.0, c.rate - c.ci_low) for c in cells], [max(0.0, c.ci_high - c.rate) for c in cells]],
        fmt="none",
        color="black",
    )
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.03)
    ax.set_ylabel("resolved rate (95% CI)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_plots(cells: list[AgentCell], turns: list[dict[str, Any]], out: Path) -> list[Path]:
    paths: list[Path | None] = []
    for model in dict.fromkeys(c.model for c in cells):
        name = slug(model)
        members = [c for c in cells if c.model == model]
        rows = [t for t in turns if t["model"] == model]
        paths.append(_resolved_plot(members, out / f"agent_resolved-{name}.png", f"{model}: resolved rate"))
        paths.append(
            _fidelity_plot(
                rows,
                "context_tokens",
                "context tokens",
                out / f"agent_fidelity_vs_context-{name}.png",
                f"{model}: fidelity vs context length",
            )
        )
        paths.append(
            _fidelity_plot(
                rows, "turn", "turn", out / f"agent_fidelity_vs_turn-{name}.png", f"{model}: fidelity vs turn"
            )
        )
    return [p for p in paths if p is not None]


def _html(cells: list[AgentCell], plots: list[Path], meta: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in _row(c)) + "</tr>" for c in cells)
    images = "".join(
        f'<img alt="{html.escape(p.stem)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        for p in plots
    )
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in meta.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in NOTES)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>ctxsparse agentic report</title><style>{CSS}</style>"
        f"</head><body><h1>ctxsparse agentic report</h1><ul class='meta'>{items}</ul><h2>Resolved rate</h2>"
        f"<table><tr>{head}</tr>{body}</table><h2>Plots</h2>{images}<h2>Notes</h2><ul>{notes}</ul></body></html>"
    )


def agent_markdown(cells: list[AgentCell], plots: Sequence[Path]) -> list[str]:
    """The agentic section as Markdown lines (a table per model, the plots, the notes)."""
    lines = ["## Agentic coding: resolved rate", ""]
    for model in dict.fromkeys(c.model for c in cells):
        lines += [f"### {model}", "", markdown_table(HEADER, [_row(c) for c in cells if c.model == model]), ""]
    lines += ["## Agentic coding: fidelity per turn", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return lines + ["## Notes", ""] + [f"- {n}" for n in NOTES] + [""]


def write_agent_report(db: str | os.PathLike, out_dir: str | os.PathLike) -> AgentReport:
    """report.md, results.csv, results.json, PNG plots and report.html for an agent database."""
    episodes, turns = _read(db)
    if not episodes:
        raise ValueError(f"{db} holds no episodes yet; run `ctxsparse agent --db {db} ...` first.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells = aggregate(episodes)
    plots = write_plots(cells, turns, out)
    meta = {
        "database": str(db),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "episodes": str(len(episodes)),
        "turns": str(len(turns)),
        "tasks": ", ".join(sorted({e["task"] for e in episodes})),
    }
    report = AgentReport(
        out, out / "report.md", out / "results.csv", out / "results.json", out / "report.html", plots, cells
    )
    text = ["# ctxsparse agentic report", ""] + [f"- **{k}**: {v}" for k, v in meta.items()] + [""]
    report.markdown.write_text("\n".join(text + agent_markdown(cells, plots)), encoding="utf-8")
    with open(report.csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(list(AgentCell.__dataclass_fields__))
        for c in cells:
            writer.writerow([json.dumps(v) if isinstance(v, (dict, list)) else v for v in asdict(c).values()])
    payload = {"meta": meta, "cells": [asdict(c) for c in cells], "episodes": episodes, "notes": list(NOTES)}
    report.json.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    report.html.write_text(_html(cells, plots, meta), encoding="utf-8")
    return report

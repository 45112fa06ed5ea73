"""The report: aggregation, paired retention, files written, valid PNGs, a self-contained HTML page."""

import csv
import json
import re

import matplotlib.image as mpimg
import pytest
from study_fakes import FakeBackend, fake_get_task

from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.report import write_report
from ctxsparse.study.report_tables import aggregate
from ctxsparse.study.runner import StudyRunner
from ctxsparse.study.store import StoreError, StudyStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _row(method, sparsity, sample, score, **over):
    return (
        dict(
            model="m",
            dtype="auto",
            task="t",
            length=64,
            phase="any" if method == "dense" else "question",
            method=method,
            spec=method,
            sparsity=sparsity,
            sample=sample,
            seed=0,
            score=score,
            density=None if method == "dense" else 1 / sparsity,
            mass_recall=1.0,
            output_error=0.0,
            kl=0.0,
            top1_agreement=1.0,
            prefill_s=0.1,
            decode_s=0.2,
            new_tokens=3,
            context_tokens=60,
        )
        | over
    )


def test_aggregate_paired_retention_and_intervals():
    rows = [_row("dense", 1.0, i, s) for i, s in enumerate([1, 1, 0, 1])]
    rows += [_row("oracle_topk", 10.0, i, s) for i, s in enumerate([1, 0, 0])]  # sample 3 not run yet
    cells = aggregate(rows)
    dense, sparse = cells
    assert dense.is_dense and dense.n == 4 and dense.accuracy == 0.75 and dense.ci_method == "wilson"
    assert sparse.n == 3 and sparse.accuracy == pytest.approx(1 / 3)
    # Paired: dense on samples 0..2 is 2/3, so retention is (1/3) / (2/3).
    assert sparse.dense_accuracy == pytest.approx(2 / 3) and sparse.retention == pytest.approx(0.5)
    assert sparse.density == pytest.approx(0.1) and dense.density is None
    assert sparse.label == "oracle_topk @ 10x"


def test_retention_empty_when_dense_scores_zero():
    rows = [_row("dense", 1.0, 0, 0.0), _row("oracle_topk", 10.0, 0, 0.0)]
    assert aggregate(rows)[1].retention is None


def test_paired_difference_on_the_same_samples():
    # Dense right on 0..5, sparse right on 0..1 and on 6: 4 pairs only dense, 1 only sparse (of 8 samples).
    rows = [_row("dense", 1.0, i, float(i < 6)) for i in range(8)]
    rows += [_row("oracle_topk", 10.0, i, float(i < 2 or i == 6)) for i in range(8)]
    rows += [_row("oracle_topk", 50.0, i, 0.5) for i in range(2)]  # fractions, only 2 samples run
    dense, sparse, partial = aggregate(rows)
    assert dense.diff is None
    assert sparse.diff == pytest.approx(-3 / 8) and sparse.pairs == 8 and sparse.diff_method == "mcnemar"
    assert sparse.p_value == pytest.approx(2 * 6 / 32)  # 2 * P(Bin(5, 1/2) <= 1)
    assert sparse.diff_low < sparse.diff < sparse.diff_high
    assert partial.pairs == 2 and partial.diff_method == "bootstrap" and partial.diff == pytest.approx(-0.5)


def test_retention_panel_says_undefined_when_dense_scores_zero(tmp_path, monkeypatch):
    from ctxsparse.study import report_plots

    texts = []
    original = report_plots._panel

    def spy(ax, cells, metric, title):
        original(ax, cells, metric, title)
        texts.extend(t.get_text() for t in ax.texts)

    monkeypatch.setattr(report_plots, "_panel", spy)
    rows = [_row("dense", 1.0, i, 0.0) for i in range(3)] + [_row("oracle_topk", 10.0, i, 0.0) for i in range(3)]
    path = report_plots.plot_metric(aggregate(rows), "retention", tmp_path / "r.png", "retention")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert any("retention undefined" in t and "dense scores 0" in t for t in texts)


@pytest.fixture()
def study_db(tmp_path):
    plan = StudyPlan.build(
        ["fake-a"], ["oracle_topk", "sink_window:sink=4"], [10, 50], ["alpha", "beta"], [128], samples=4
    )
    runner = StudyRunner(plan, FakeBackend(), get_task=fake_get_task, progress=False)
    runner.check_names()
    runner.open_models()
    path = tmp_path / "r.db"
    with StudyStore.open(path) as store:
        runner.run(store, argv=["study", "--samples", "4"])
    return path


def test_report_files(study_db, tmp_path):
    out = tmp_path / "report"
    report = write_report(study_db, out)
    for path in (report.markdown, report.csv, report.json, report.html):
        assert path.exists() and path.stat().st_size > 0
    assert len(report.plots) == 5
    names = {p.name.split("_vs_")[0] for p in report.plots}
    assert names == {"accuracy", "retention", "difference", "mass_recall", "kl"}
    for png in report.plots:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        image = mpimg.imread(png)
        assert image.shape[0] > 100 and image.shape[1] > 100

    with open(report.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 * 2  # (dense + 2 methods x 2 sparsities) x 2 tasks
    assert {r["ci_method"] for r in rows} == {"wilson"}
    dense_alpha = next(r for r in rows if r["spec"] == "dense" and r["task"] == "alpha")
    assert float(dense_alpha["accuracy"]) == 1.0 and dense_alpha["n"] == "4"

    data = json.loads(report.json.read_text())
    assert data["models"] == ["fake-a"]
    assert {"ctxsparse", "torch", "transformers", "python", "platform"} <= set(data["versions"])
    assert len(data["configurations"]) == 5 and data["runs"][0]["argv"] == ["study", "--samples", "4"]
    assert data["runs"][0]["versions"]["torch"]

    md = report.markdown.read_text()
    assert "| dense |" in md and "oracle_topk @ 50x" in md and "Wilson" in md and "retention" in md
    assert "alpha" in report.summary() and "sink_window:sink=4 @ 10x" in report.summary()


def test_html_is_self_contained(study_db, tmp_path):
    report = write_report(study_db, tmp_path / "report")
    page = report.html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(sources) == len(report.plots) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<style>" in page and "oracle_topk @ 10x" in page


def test_report_refuses_foreign_and_empty(tmp_path):
    foreign = tmp_path / "x.db"
    foreign.write_bytes(b"not a database at all" * 20)
    with pytest.raises(StoreError):
        write_report(foreign, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    StudyStore.open(tmp_path / "empty.db").close()
    with pytest.raises(ValueError, match="no results"):
        write_report(tmp_path / "empty.db", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "missing.db", tmp_path / "out")


def test_no_mass_recall_plot_where_no_row_measured_it(study_db, tmp_path):
    """The engine path stores KL but no attention mass recall: no empty mass-recall figure is drawn."""
    import sqlite3

    with sqlite3.connect(study_db) as con:
        con.execute("UPDATE results SET mass_recall = NULL, density = NULL, output_error = NULL")
    report = write_report(study_db, tmp_path / "report")
    assert {p.name.split("_vs_")[0] for p in report.plots} == {"accuracy", "retention", "difference", "kl"}

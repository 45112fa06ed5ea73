"""Sample identity when --samples grows, two studies on one database, signals, and no deprecation warnings."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import ctxsparse
from ctxsparse.cli.main import main

SRC = str(Path(ctxsparse.__file__).parents[1])
TINY = "random:tiny-llama"
SMALL = ["--lengths", "160", "--sparsity", "10", "--max-new-tokens", "2", "--no-progress", "--no-report"]


def _rows(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT task, sample, method, sample_hash FROM results").fetchall()


def _cli(*argv):
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "ctxsparse.cli.main", *argv]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_growing_samples_keeps_earlier_samples_and_pairs_same_texts(tmp_path, capsys):
    db = tmp_path / "mix.db"
    study = ["study", "--model", TINY, "--tasks", "niah_single,niah_multikey", *SMALL, "--db", str(db)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*study, "--methods", "dense", "--samples", "2"]) == 0
    noisy = [w for w in caught if issubclass(w.category, DeprecationWarning | FutureWarning)]
    assert not noisy, [str(w.message) for w in noisy]
    first = {(t, s): h for t, s, m, h in _rows(db)}
    assert main([*study, "--methods", "dense;oracle_topk", "--samples", "4"]) == 0
    assert "12 rows written, 4 already done" in capsys.readouterr().err
    rows = _rows(db)
    dense = {(t, s): h for t, s, m, h in rows if m == "dense"}
    assert {k: dense[k] for k in first} == first
    assert all(h == dense[(t, s)] for t, s, m, h in rows)
    assert len(set(dense.values())) == 8

    with sqlite3.connect(db) as conn:  # rows of sample 3 as an older generator made them
        conn.execute("UPDATE results SET sample_hash = 'older' WHERE sample = 3 AND task = 'niah_single'")
    grown = [*study, "--methods", "dense;oracle_topk", "--samples", "4"]
    assert main(grown) == 0
    assert "2 rows (1 samples) were made from texts the task generators no longer produce" in capsys.readouterr().err
    assert main(["report", str(db), "--out", str(tmp_path / "rep")]) == 0
    assert "stale rows left out**: 2" in (tmp_path / "rep" / "report.md").read_text()
    assert main([*grown, "--rerun-stale"]) == 0
    err = capsys.readouterr().err
    assert "deleted 2 stale rows" in err and "2 rows written" in err
    assert "older" not in {h for *_, h in _rows(db)}


def _written(err):
    line = next(line for line in err.splitlines() if "rows written" in line)
    return int(line.split("study: ")[1].split(" rows written")[0])


def test_two_studies_on_one_database_compute_each_row_once(tmp_path):
    db = tmp_path / "shared.db"
    base = ["study", "--model", TINY, "--tasks", "niah_single", "--methods", "dense;oracle_topk", *SMALL]
    for samples, grid in (("2", 4), ("3", 2)):  # a fresh database, then an existing one that grows
        procs = [_cli(*base, "--samples", samples, "--db", str(db)) for _ in range(2)]
        results = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
        assert sum(_written(err) for _, err in results) == grid
        rows = _rows(db)
        assert len(rows) == len({r[:3] for r in rows}) == 2 * int(samples)


def _wait_for_rows(db, proc, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if db.exists():
            try:
                if _rows(db):
                    return
            except sqlite3.Error:
                pass
        time.sleep(0.2)
    raise AssertionError("the study wrote no row in time")


@pytest.mark.parametrize(("sig", "word", "code"), [(signal.SIGTERM, "terminated (SIGTERM)", 143)])
def test_sigterm_mid_run_checkpoints_and_says_one_line(tmp_path, sig, word, code):
    db = tmp_path / "r.db"
    argv = ["study", "--model", TINY, "--tasks", "niah_single,vt", "--methods", "dense;oracle_topk", *SMALL]
    proc = _cli(*argv, "--samples", "30", "--lengths", "512", "--db", str(db))
    _wait_for_rows(db, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"ctxsparse study: {word}: ") and f"rows are saved in {db}; run the same command" in last
    assert "Traceback" not in err
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    saved = int(last.split(": ")[-1].split(" rows")[0])
    assert saved == len(_rows(db)) > 0


@pytest.mark.parametrize(
    ("sig", "word", "code"), [(signal.SIGINT, "interrupted", 130), (signal.SIGTERM, "terminated (SIGTERM)", 143)]
)
def test_early_signal_during_imports_says_the_same_one_line(tmp_path, sig, word, code):
    db = tmp_path / "r.db"
    proc = _cli("study", "--model", TINY, *SMALL, "--db", str(db))
    time.sleep(0.4)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert (
        err.strip().splitlines()[-1]
        == f"ctxsparse study: {word}: nothing was written to {db}; run the same command to start again."
    )
    assert not db.exists()

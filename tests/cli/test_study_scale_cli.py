"""`ctxsparse study` at scale: executor refusals before any work, Double Sparsity calibration checked
first (and made with --calibrate), JSONL tasks stored under their file stem."""

import json
import sqlite3
import sys

import pytest

from ctxsparse.cli.main import main
from ctxsparse.study import backend as study_backend

TINY = "random:tiny-llama"
GRID = ["--model", TINY, "--sparsity", "10", "--lengths", "192", "--samples", "2", "--max-new-tokens", "3"]
GRID += ["--no-progress", "--no-report"]


@pytest.fixture()
def no_model_loads(monkeypatch):
    def refuse(self, model):
        raise AssertionError(f"model {model} was loaded before the input was checked")

    monkeypatch.setattr(study_backend.TransformersBackend, "open", refuse)


def test_ray_executor_without_ray_is_refused_before_work(tmp_path, capsys, monkeypatch, no_model_loads):
    monkeypatch.setitem(sys.modules, "ray", None)
    db = tmp_path / "r.db"
    assert main(["study", *GRID, "--executor", "ray", "--db", str(db)]) == 2
    assert "pip install 'ctxsparse[ray]'" in capsys.readouterr().err
    assert not db.exists()


def test_unreachable_ray_address_is_refused_before_work(tmp_path, capsys, no_model_loads):
    db = tmp_path / "r.db"
    assert main(["study", *GRID, "--executor", "ray", "--ray-address", "127.0.0.1:1", "--db", str(db)]) == 2
    assert "No Ray cluster answers at 127.0.0.1:1" in capsys.readouterr().err
    assert not db.exists()


def test_ray_options_need_the_ray_executor(tmp_path, capsys, no_model_loads):
    assert main(["study", *GRID, "--gpus-per-worker", "1", "--db", str(tmp_path / "r.db")]) == 2
    assert "need --executor ray" in capsys.readouterr().err


def test_double_sparsity_calibration_checked_first_then_made(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CTXSPARSE_CALIBRATION_DIR", str(tmp_path / "cal"))
    db = tmp_path / "r.db"
    argv = ["study", *GRID, "--tasks", "niah_single", "--methods", "dense;double_sparsity", "--db", str(db)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "add --calibrate" in err and "ctxsparse calibrate --model random:tiny-llama" in err
    assert not db.exists()
    assert main([*argv, "--calibrate"]) == 0
    assert len(list((tmp_path / "cal").glob("*.json"))) == 1
    rows = sqlite3.connect(db).execute("SELECT method FROM results").fetchall()
    assert sorted(r[0] for r in rows) == ["dense"] * 2 + ["double_sparsity"] * 2


def test_jsonl_task_is_stored_under_its_file_stem(tmp_path, capsys):
    path = tmp_path / "data" / "my_needles.jsonl"
    path.parent.mkdir()
    rows = [{"input": f"The code is {n}.\nWhat is the code?", "outputs": [str(n)]} for n in (1234, 5678)]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    db = tmp_path / "r.db"
    assert main(["study", *GRID, "--tasks", str(path), "--methods", "dense", "--db", str(db)]) == 0
    assert "my_needles" in capsys.readouterr().out
    tasks = {r[0] for r in sqlite3.connect(db).execute("SELECT task FROM results")}
    assert tasks == {"my_needles"}


DEMO = ["demo", "--model", TINY, "--tasks", "niah_single", "--lengths", "160", "--max-new-tokens", "3", "--no-progress"]


def test_demo_writes_into_ctxsparse_demo_and_fits_its_budget(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A budget smaller than the first sample's time: one sample per cell, said so.
    assert main([*DEMO, "--samples", "2", "--budget-s", "0.001"]) == 0
    printed = capsys.readouterr().out
    assert "1 sample(s) per cell fit the budget" in printed and "demo wall time" in printed
    db = tmp_path / "ctxsparse-demo" / "results.db"
    assert (tmp_path / "ctxsparse-demo" / "report" / "report.html").exists()
    assert len(sqlite3.connect(db).execute("SELECT * FROM results").fetchall()) == 5
    # A generous budget runs the rest of the samples into the same folder (resumed).
    assert main([*DEMO, "--samples", "2", "--budget-s", "3600"]) == 0
    assert "2 sample(s) per cell" in capsys.readouterr().out
    assert len(sqlite3.connect(db).execute("SELECT * FROM results").fetchall()) == 10


def test_study_through_the_engine_path(tmp_path, capsys):
    """--decode-path engine: the study's rows come from ctxsparse.Engine (here on the CPU), with KL measured."""
    db = tmp_path / "e.db"
    argv = ["study", *GRID, "--methods", "dense;oracle_topk", "--batch-size", "2", "--decode-path", "engine"]
    assert main([*argv, "--db", str(db)]) == 0
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT method, kl, mass_recall FROM results").fetchall()
    assert rows and {r[0] for r in rows} == {"dense", "oracle_topk"}
    assert all(kl is not None and mass is None for method, kl, mass in rows if method == "oracle_topk")


def test_unknown_decode_path_is_an_argument_error(tmp_path, capsys, no_model_loads):
    with pytest.raises(SystemExit) as exit_info:
        main(["study", *GRID, "--decode-path", "fast", "--db", str(tmp_path / "x.db")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err

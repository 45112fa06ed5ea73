"""`ctxsparse study`, `report`, `replay` and `demo` end to end on random:tiny-llama, and refusals before work."""

import json
import sqlite3

import pytest

from ctxsparse.cli.main import build_parser, main
from ctxsparse.study import backend as study_backend

TINY = "random:tiny-llama"
GRID = [
    "--tasks",
    "niah_single,vt",
    "--sparsity",
    "1,10",
    "--lengths",
    "256",
    "--samples",
    "2",
    "--max-new-tokens",
    "4",
]
GRID += ["--no-progress"]
METHODS = ["--methods", "dense;oracle_topk;sink_window:sink=4,window=16"]


@pytest.fixture()
def no_model_loads(monkeypatch):
    """Fail the test if a model is loaded."""

    def refuse(self, model):
        raise AssertionError(f"model {model} was loaded before the input was checked")

    monkeypatch.setattr(study_backend.TransformersBackend, "open", refuse)


def _rows(db):
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT spec, sparsity, task, sample FROM results").fetchall()
    finally:
        conn.close()


def test_study_runs_resumes_and_reports(tmp_path, capsys):
    db, out = tmp_path / "r.db", tmp_path / "rep"
    argv = ["study", "--model", TINY, *METHODS, *GRID, "--db", str(db), "--output_path", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "oracle_topk @ 10x" in printed.out and "sink_window:sink=4,window=16 @ 10x" in printed.out
    assert "niah_single" in printed.out and "vt" in printed.out
    assert f"report: {out / 'report.html'}" in printed.out
    rows = _rows(db)
    assert len(rows) == len(set(rows)) == 3 * 2 * 2
    assert (out / "report.md").exists() and (out / "results.json").exists()

    assert main(argv) == 0
    assert "0 rows written, 12 already done, 0 prefills" in capsys.readouterr().err
    assert len(_rows(db)) == 12

    assert main(["report", str(db), "--out", str(tmp_path / "rep2")]) == 0
    assert (tmp_path / "rep2" / "report.html").exists()
    assert "dense" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tasks", "niah_single,nonesuch"], "Known tasks"),
        (["--methods", "dense;nonesuch"], "Known selectors"),
        (["--methods", "window=3,dense"], "follows no"),
        (["--dtype", "float13"], "Unknown dtype"),
    ],
)
def test_bad_names_refused_before_any_work(tmp_path, capsys, no_model_loads, extra, message):
    db = tmp_path / "r.db"
    assert main(["study", "--model", TINY, *GRID, *extra, "--db", str(db)]) == 2
    assert message in capsys.readouterr().err
    assert not db.exists()


def test_unknown_model_and_long_context_refused(tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["study", "--model", "nonesuch-model", *GRID, "--db", str(db)]) == 2
    assert "Known names" in capsys.readouterr().err
    assert main(["study", "--model", TINY, *GRID[:-1], "--lengths", "256,9000", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "9000" in err and "8192" in err
    assert not db.exists()


def test_foreign_database_refused_untouched(tmp_path, capsys, no_model_loads):
    db = tmp_path / "theirs.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE results (x)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    assert main(["study", "--model", TINY, *GRID, "--db", str(db)]) == 2
    assert "another application" in capsys.readouterr().err
    assert db.read_bytes() == before
    assert main(["report", str(db)]) == 2
    assert db.read_bytes() == before


def test_method_flags_and_aliases_parse():
    parser = build_parser()
    a = parser.parse_args(["study", "--method", "oracle_topk", "--method", "sink_window:sink=4,window=64"])
    b = parser.parse_args(["study", "--methods", "oracle_topk;sink_window:sink=4,window=64"])
    from ctxsparse.cli.study import plan_from

    assert plan_from(a).methods == plan_from(b).methods
    assert [m.spec for m in plan_from(a).methods] == ["dense", "oracle_topk", "sink_window:sink=4,window=64"]
    assert parser.parse_args(["study", "--output_path", "x"]).report == "x"
    assert parser.parse_args(["report", "r.db", "--output_path", "y"]).out == "y"
    demo = parser.parse_args(["demo"])
    assert demo.tasks == "niah_single,vt,multihop" and demo.sparsity == "10,50" and demo.samples == 3


def test_demo_small(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = [
        "demo",
        "--model",
        TINY,
        "--tasks",
        "niah_single",
        "--lengths",
        "256",
        "--samples",
        "1",
        "--max-new-tokens",
        "4",
    ]
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "oracle_topk @ 50x" in printed and "demo wall time" in printed
    assert (out / "results.db").exists() and (out / "report" / "report.html").exists()
    assert len(_rows(out / "results.db")) == 5


def test_replay_transcript_with_tool_calls(tmp_path, capsys):
    transcript = [
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "user", "content": "What is the weather in Paris and in Rome? " * 8},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 C"},
        {"role": "assistant", "content": "Paris is sunny at 21 C."},
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(transcript))
    out = tmp_path / "replay.json"
    assert main(["replay", str(path), "--model", TINY, "--sparsity", "4", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "oracle_topk at 4x" in printed and "tool calls as text" in printed
    data = json.loads(out.read_text())
    assert [t["message"] for t in data["turns"]] == [2, 4]
    assert all(t["scored"] > 0 and 0 <= t["agreement"] <= 1 and t["kl_mean"] >= 0 for t in data["turns"])
    assert data["sparse_from"] == data["turns"][0]["start"]

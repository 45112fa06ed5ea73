import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctxsparse.agent.swebench import docker_problem
from ctxsparse.cli.main import main
from ctxsparse.study.trajectories import read_trajectory

SMALL = ["--model", "random:tiny-llama", "--max-turns", "2", "--max-new-tokens", "6", "--command-timeout", "5"]


def episodes(db):
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id, key, task, method, sparsity, turns, exit_reason FROM episodes").fetchall()
    except sqlite3.OperationalError:  # the schema is not written yet
        return []
    finally:
        conn.close()


def test_agent_runs_and_stores_episodes_and_turns(tmp_path, capsys):
    db = tmp_path / "agent.db"
    argv = ["agent", *SMALL, "--tasks", "page_count", "--methods", "dense;oracle_topk", "--sparsity", "1,4"]
    assert main([*argv, "--db", str(db), "--trajectories", str(tmp_path / "traj")]) == 0
    rows = episodes(db)
    saved = sorted((tmp_path / "traj").glob("*.traj.json"))
    assert len(saved) == 2 and read_trajectory(saved[0]).format == "mini-swe-agent trajectory JSON"
    assert sorted((r[3], r[4]) for r in rows) == [("dense", 1.0), ("oracle_topk", 4.0)]
    conn = sqlite3.connect(db)
    turns = conn.execute("SELECT context_tokens, prefilled_tokens, generated_tokens, mass_recall FROM turns").fetchall()
    isolation = {r[0] for r in conn.execute("SELECT isolation FROM episodes")}
    conn.close()
    assert len(turns) == sum(r[5] for r in rows) >= 2
    assert all(t[0] > 0 and 0 < t[1] <= t[0] and t[2] >= 1 for t in turns)
    assert any(t[3] is not None for t in turns)  # the sparse episode traced its attention mass recall
    assert {i.split(",")[0] for i in isolation} <= {"namespaces", "network", "rlimits"}
    # A random model never writes mini-swe-agent's action block: every turn is a recorded format error.
    assert {r[6] for r in rows} <= {"LimitsExceeded", "RepeatedFormatError"}
    # A rerun finds everything stored and runs nothing.
    assert main([*argv, "--db", str(db)]) == 0
    assert "2 of 2 episodes already stored" in capsys.readouterr().out
    assert len(episodes(db)) == 2


def test_killed_run_resumes_without_duplicates_or_losses(tmp_path):
    db = tmp_path / "resume.db"
    argv = ["agent", *SMALL, "--tasks", "page_count,median_even,roman_numerals", "--methods", "dense"]
    argv += ["--db", str(db)]
    scratch = tmp_path / "scratch"  # the killed run's workspace is left here, inside the test's folder
    scratch.mkdir()
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "TMPDIR": str(scratch)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctxsparse.cli.main", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists() and len(episodes(db)) >= 1:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    first = episodes(db)
    assert 1 <= len(first) < 3, "the kill should land after the first episode and before the last"
    assert main(argv) == 0
    after = episodes(db)
    assert len(after) == 3 and len({r[1] for r in after}) == 3
    assert set(first) <= set(after)  # stored episodes kept untouched
    assert sorted(r[2] for r in after) == ["median_even", "page_count", "roman_numerals"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--env", "cloud"], "Known environments: local, swebench"),
        (["--tasks", "nope"], "Known tasks: all, chunked_tail"),
        (["--max-turns", "0"], "--max-turns must be >= 1"),
        (["--methods", "no_such_selector"], "no_such_selector"),
        (["--sparsity", "0.5"], "must be >= 1"),
    ],
)
def test_bad_inputs_refused_before_any_work(tmp_path, capsys, extra, message):
    db = tmp_path / "bad.db"
    assert main(["agent", *SMALL, *extra, "--db", str(db)]) == 2
    assert message in capsys.readouterr().err
    assert not db.exists()


def test_task_folder_without_hidden_tests(tmp_path, capsys):
    task = tmp_path / "mytask"
    (task / "repo").mkdir(parents=True)
    (task / "issue.md").write_text("fix")
    assert main(["agent", *SMALL, "--tasks", str(task), "--db", str(tmp_path / "x.db")]) == 2
    assert "no hidden tests" in capsys.readouterr().err


def test_missing_mini_swe_agent_gives_install_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "minisweagent", None)
    assert main(["agent", *SMALL, "--tasks", "page_count", "--db", str(tmp_path / "x.db")]) == 2
    assert "pip install" in capsys.readouterr().err


@pytest.mark.skipif(docker_problem() is None, reason="Docker is available here, so nothing is refused")
def test_swebench_without_docker_refused_before_any_work(tmp_path, capsys):
    db = tmp_path / "swe.db"
    argv = ["agent", *SMALL, "--env", "swebench", "--instances", "astropy__astropy-12907", "--db", str(db)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs Docker" in err and "--env local" in err
    assert not db.exists()


def test_swebench_requirements_checked_in_order(tmp_path, capsys, monkeypatch):
    import importlib.util

    import ctxsparse.agent.swebench as swebench

    db = tmp_path / "swe.db"
    base = ["agent", *SMALL, "--env", "swebench", "--db", str(db)]
    assert main(base) == 2
    assert "needs --instances" in capsys.readouterr().err
    monkeypatch.setattr(swebench, "docker_problem", lambda: None)  # as if a Docker daemon answered
    if importlib.util.find_spec("swebench") is None:
        assert main([*base, "--instances", "astropy__astropy-12907"]) == 2
        assert "pip install swebench" in capsys.readouterr().err
    assert not db.exists()

"""The runner: one prefill per sample, resumable after a crash or a kill, no duplicate or lost rows."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from study_fakes import FakeBackend, SimulatedCrash, fake_get_task

from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.runner import StudyRunner
from ctxsparse.study.store import StudyStore

HERE = Path(__file__).parent


def _plan(**kw):
    base = dict(
        models=["fake-a"],
        methods=["dense", "oracle_topk", "sink_window:sink=4,window=8"],
        sparsities=[1, 10, 50],
        tasks=["alpha", "beta"],
        lengths=[128, 256],
        samples=3,
    )
    return StudyPlan.build(**{**base, **kw})


def _runner(plan, backend):
    runner = StudyRunner(plan, backend, get_task=fake_get_task, progress=False)
    runner.check_names()
    runner.open_models()
    return runner


def test_full_run_prefills_each_sample_once(tmp_path):
    plan = _plan()
    backend = FakeBackend()
    with StudyStore.open(tmp_path / "r.db") as store:
        out = _runner(plan, backend).run(store)
        assert out.written == plan.size() == 5 * 2 * 2 * 3
        assert out.prefills == len(backend.prefills) == 2 * 2 * 3
        assert len(set(backend.prefills)) == len(backend.prefills)
        rows = store.rows()
    dense = [r for r in rows if r["method"] == "dense"]
    assert len(dense) == 12 and {r["sparsity"] for r in dense} == {1.0}
    assert {r["sparsity"] for r in rows if r["method"] == "oracle_topk"} == {10.0, 50.0}
    assert all(r["score"] in (0.0, 1.0) for r in rows)


def test_rerun_skips_done_rows_without_prefill(tmp_path):
    plan = _plan()
    with StudyStore.open(tmp_path / "r.db") as store:
        _runner(plan, FakeBackend()).run(store)
        again = FakeBackend()
        out = _runner(plan, again).run(store)
        assert out.written == 0 and out.skipped == plan.size()
        assert again.prefills == [] and again.decodes == 0
        assert store.count() == plan.size()


def test_resume_after_crash_no_duplicates_no_losses(tmp_path):
    plan = _plan()
    path = tmp_path / "r.db"
    with StudyStore.open(path) as store:
        crashing = FakeBackend(fail_after=17)
        with pytest.raises(SimulatedCrash):
            _runner(plan, crashing).run(store)
        assert store.count() == 17
        first_rows = {tuple(r[k] for k in ("config_hash", "task", "length", "sample")) for r in store.rows()}
    with StudyStore.open(path) as store:
        resumed = FakeBackend()
        out = _runner(plan, resumed).run(store)
        assert out.written == plan.size() - 17 and out.skipped == 17
        # Samples whose rows were all done before the crash are not prefilled again: 17 rows = 3 full samples.
        assert len(resumed.prefills) == 12 - 17 // 5
        rows = store.rows()
    keys = [tuple(r[k] for k in ("config_hash", "task", "length", "sample")) for r in rows]
    assert len(keys) == len(set(keys)) == plan.size()
    assert first_rows <= set(keys)


def test_limit_runs_a_prefix_then_the_rest(tmp_path):
    with StudyStore.open(tmp_path / "r.db") as store:
        out = _runner(_plan(limit=1), FakeBackend()).run(store)
        assert out.written == 5 * 2 * 2
        out = _runner(_plan(), FakeBackend()).run(store)
        assert out.written == 5 * 2 * 2 * 2 and store.count() == 60


def test_unknown_names_and_long_contexts_refused_before_work(tmp_path):
    backend = FakeBackend(max_positions=200)
    with pytest.raises(ValueError, match="Known tasks: alpha, beta"):
        StudyRunner(_plan(tasks=["alpha", "gamma"]), backend, get_task=fake_get_task).check_names()
    with pytest.raises(ValueError, match="Known selectors"):
        StudyRunner(_plan(methods=["dense", "nonesuch"]), backend, get_task=fake_get_task).check_names()
    with pytest.raises(ValueError, match="Known models"):
        StudyRunner(_plan(models=["bogus"]), backend, get_task=fake_get_task).open_models()
    with pytest.raises(ValueError, match=r"\[256\].*limit of 200"):
        StudyRunner(_plan(), backend, get_task=fake_get_task).open_models()
    assert backend.prefills == [] and backend.decodes == 0


def test_two_models_share_the_loaded_one(tmp_path):
    backend = FakeBackend()
    plan = _plan(models=["fake-a", "fake-b"], tasks=["alpha"], lengths=[64], samples=2)
    with StudyStore.open(tmp_path / "r.db") as store:
        out = _runner(plan, backend).run(store)
        assert out.written == plan.size() == 2 * 5 * 2
        # Validation loads both; the run starts with the one still loaded, so only fake-a loads twice.
        assert backend.opened == ["fake-a", "fake-b", "fake-a"]
        assert {r["model"] for r in store.rows()} == {"fake-a", "fake-b"}


KILL_SCRIPT = """
import sys
from study_fakes import FakeBackend, fake_get_task
from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.runner import StudyRunner
from ctxsparse.study.store import StudyStore
plan = StudyPlan.build(["fake-a"], ["dense", "oracle_topk"], [10, 50], ["alpha", "beta"], [128], samples=6)
runner = StudyRunner(plan, FakeBackend(delay=float(sys.argv[2])), get_task=fake_get_task, progress=False)
runner.check_names(); runner.open_models()
with StudyStore.open(sys.argv[1]) as store:
    runner.run(store)
"""


def test_resume_after_sigkill(tmp_path):
    path = tmp_path / "r.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path), "0.05"], env=env)
    deadline = time.time() + 30
    count = 0
    while time.time() < deadline and count < 8:
        time.sleep(0.05)
        try:
            conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
            count = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            conn.close()
        except sqlite3.Error:
            count = 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 8 <= count < 36, "the study should have been killed part-way"
    with StudyStore.open(path) as store:
        killed_at = store.count()
        assert killed_at < 36
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(path), "0"], env=env, timeout=60)
    assert done.returncode == 0
    with StudyStore.open(path) as store:
        rows = store.rows()
    keys = [(r["config_hash"], r["task"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys)) == 36
    assert len({r["run_id"] for r in rows}) == 2


def test_deadline_stops_new_work_and_leaves_the_rest_pending(tmp_path):
    plan = _plan()
    with StudyStore.open(tmp_path / "r.db") as store:
        passed = _runner(plan, FakeBackend()).run(store, deadline=time.monotonic() - 1)
        assert passed.written == 0 and passed.pending == plan.size() and passed.prefills == 0
        out = _runner(plan, FakeBackend(delay=0.01)).run(store, deadline=time.monotonic() + 0.15)
        assert out.written < plan.size() and out.written + out.pending == plan.size()
        assert store.count() == out.written
        rest = _runner(plan, FakeBackend()).run(store)
        assert rest.written == out.pending and rest.pending == 0 and store.count() == plan.size()

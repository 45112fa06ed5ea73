"""Many processes creating one new database at once, writable-path checks, WAL checkpoint on close, run lock."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctxsparse.study import store as store_module
from ctxsparse.study.run_lock import lock_path, study_lock
from ctxsparse.study.store import StoreError, StudyStore, preflight

STUDY = Path(store_module.__file__).parent
# The children load store.py / run_lock.py by path (standard library only), so they start in milliseconds
# instead of importing torch through the package.
LOAD = f"""
import importlib.util, sys, time
def load(name):
    spec = importlib.util.spec_from_file_location(name, {str(STUDY)!r} + "/" + name + ".py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
"""

OPEN_AT = (
    LOAD
    + """
StudyStore = load("store").StudyStore
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
with StudyStore.open(sys.argv[1]) as store:
    store.count()
"""
)


def _spawn(code, *args):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stderr=subprocess.PIPE, text=True)


def test_simultaneous_creation_never_fails(tmp_path):
    for attempt in range(4):
        path = tmp_path / f"new{attempt}.db"
        start = time.time() + 0.5
        procs = [_spawn(OPEN_AT, path, start) for _ in range(8)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 8, errors
        with StudyStore.open(path, create=False) as store:
            assert store.count() == 0


def test_close_checkpoints_the_wal_into_the_file(tmp_path):
    from test_store import _row

    path = tmp_path / "r.db"
    with StudyStore.open(path) as store:
        store.add(_row())
        assert Path(f"{path}-wal").exists()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with StudyStore.open(path, create=False) as store:
        assert store.count() == 1


def test_preflight_refuses_directories_and_read_only_places(tmp_path, monkeypatch):
    with pytest.raises(StoreError, match="is a directory; give --db a file name"):
        preflight(tmp_path)
    real_access = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(store_module.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    with pytest.raises(StoreError, match="folder .*locked is read-only.*writable folder"):
        preflight(locked / "r.db")
    assert not (locked / "r.db").exists()

    db = tmp_path / "ro.db"
    StudyStore.open(db).close()
    monkeypatch.setattr(store_module.os, "access", lambda p, mode: Path(p) != db and real_access(p, mode))
    with pytest.raises(StoreError, match=r"ro.db is read-only.*chmod u\+rw"):
        preflight(db)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_preflight_with_real_permissions(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="read-only"):
            preflight(folder / "r.db")
    finally:
        folder.chmod(0o700)


HOLD = (
    LOAD
    + """
study_lock = load("run_lock").study_lock
with study_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""
)


def test_second_study_waits_for_the_lock_and_a_killed_holder_frees_it(tmp_path):
    db = tmp_path / "r.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db), "30"], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"held"
    assert lock_path(db).read_text().startswith(f"pid {holder.pid}")
    log_path = tmp_path / "log.txt"
    with open(log_path, "w") as log:
        holder_killed_at = time.monotonic()
        killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {holder.pid}"])
        with study_lock(db, log=log):
            waited = time.monotonic() - holder_killed_at
    killer.wait()
    holder.wait()
    assert waited >= 0.9
    assert f"another ctxsparse study (pid {holder.pid}) is writing to {db}" in log_path.read_text()
    with study_lock(db, log=None):
        pass

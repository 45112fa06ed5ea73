"""The results database: foreign, corrupt and other-schema files are refused untouched; rows are unique."""

import sqlite3

import pytest

from ctxsparse.study.store import StoreError, StudyStore, verify


def _row(**over):
    from ctxsparse.study.store import ResultRow

    base = dict(
        config_hash="h",
        model="m",
        method="dense",
        spec="dense",
        params="{}",
        sparsity=1.0,
        phase="any",
        dtype="auto",
        task="t",
        length=64,
        sample=0,
        seed=0,
        score=1.0,
    )
    return ResultRow(**{**base, **over})


def test_create_reopen_and_unique_rows(tmp_path):
    path = tmp_path / "r.db"
    with StudyStore.open(path) as store:
        run = store.start_run(["study"], {"x": 1}, {"torch": "t"})
        assert store.add(_row(run_id=run)) is True
        assert store.add(_row(run_id=run, score=0.0)) is False
        assert store.add(_row(sample=1)) is True
    verify(path)
    with StudyStore.open(path, create=False) as store:
        assert store.count() == 2
        assert store.rows()[0]["score"] == 1.0
        assert store.done_keys() == {("h", "t", 64, 0, 0), ("h", "t", 64, 1, 0)}
        assert store.runs()[0]["plan"] == {"x": 1}
        assert store.conn.execute("PRAGMA application_id").fetchone()[0] == 0x43545853


def _assert_refused(path, match):
    before = path.read_bytes()
    with pytest.raises(StoreError, match=match):
        StudyStore.open(path)
    assert path.read_bytes() == before
    assert not (path.parent / (path.name + "-wal")).exists() or path.suffix != ".txt"


def test_non_sqlite_file_refused_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 10)
    _assert_refused(path, "not an SQLite database")


def test_foreign_sqlite_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE results (x)")
    conn.execute("INSERT INTO results VALUES (42)")
    conn.commit()
    conn.close()
    _assert_refused(path, "another application")


def test_our_id_without_meta_refused(tmp_path):
    path = tmp_path / "odd.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1129601107")
    conn.execute("CREATE TABLE x (y)")
    conn.commit()
    conn.close()
    _assert_refused(path, "tables")


def test_corrupt_database_refused_untouched(tmp_path):
    path = tmp_path / "r.db"
    with StudyStore.open(path) as store:
        for i in range(200):
            store.add(_row(sample=i, prediction="x" * 200))
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):
        data[offset + 8 : offset + 300] = b"\xff" * 292
    path.write_bytes(bytes(data))
    _assert_refused(path, "corrupt|cannot be read|tables")


def test_other_schema_version_refused(tmp_path):
    path = tmp_path / "r.db"
    StudyStore.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    _assert_refused(path, "schema '99'")


def test_missing_database_for_reading(tmp_path):
    with pytest.raises(FileNotFoundError, match="ctxsparse study"):
        StudyStore.open(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()

"""The study's results database (SQLite): one committed row per finished (configuration, sample).

Resumability rests on two things: the primary key (config_hash, task, length, sample, seed), and one
transaction per row, so a killed study keeps every row it finished and loses only those in flight.
A file that is not a ctxsparse study database (another program's SQLite file, a corrupt file, any other
file) is refused and never written to. Several processes may open one database at once (SQLite's WAL mode
with a busy timeout); close() checkpoints the WAL so that the database file alone holds every row.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

APPLICATION = "ctxsparse-study"
APPLICATION_ID = 0x43545853  # 'CTXS', kept in the SQLite header (PRAGMA application_id)
SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 60_000  # a writer waits this long for another process's transaction

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT NOT NULL, finished TEXT, argv TEXT NOT NULL, plan TEXT NOT NULL, versions TEXT NOT NULL
);
CREATE TABLE results (
    config_hash TEXT NOT NULL, run_id INTEGER, model TEXT NOT NULL, method TEXT NOT NULL,
    spec TEXT NOT NULL, params TEXT NOT NULL, sparsity REAL NOT NULL, phase TEXT NOT NULL, dtype TEXT NOT NULL,
    task TEXT NOT NULL, length INTEGER NOT NULL, sample INTEGER NOT NULL, seed INTEGER NOT NULL,
    sample_hash TEXT, metric TEXT, score REAL NOT NULL, prediction TEXT, answers TEXT,
    density REAL, mass_recall REAL, output_error REAL, kl REAL, top1_agreement REAL, steps INTEGER,
    prefill_s REAL, decode_s REAL, new_tokens INTEGER, context_tokens INTEGER, created TEXT NOT NULL,
    PRIMARY KEY (config_hash, task, length, sample, seed)
);
"""

# What the task generators make now, per sample: rows whose sample_hash differs are stale. Added to older
# databases on open (the three tables above are what marks a study database).
_SAMPLES_TABLE = """
CREATE TABLE IF NOT EXISTS samples (
    model TEXT NOT NULL, task TEXT NOT NULL, length INTEGER NOT NULL, sample INTEGER NOT NULL,
    seed INTEGER NOT NULL, sample_hash TEXT NOT NULL, checked TEXT NOT NULL,
    PRIMARY KEY (model, task, length, sample, seed)
)
"""

SampleKey = tuple[str, str, int, int, int]  # (model, task, length, sample, seed)


class StoreError(ValueError):
    """The database file cannot be used; the message says why and what to do."""


@dataclass
class ResultRow:
    """One finished (configuration, sample)."""

    config_hash: str
    model: str
    method: str
    spec: str
    params: str
    sparsity: float
    phase: str
    dtype: str
    task: str
    length: int
    sample: int
    seed: int
    score: float
    run_id: int | None = None
    sample_hash: str | None = None
    metric: str | None = None
    prediction: str | None = None
    answers: str | None = None
    density: float | None = None
    mass_recall: float | None = None
    output_error: float | None = None
    kl: float | None = None
    top1_agreement: float | None = None
    steps: int | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    new_tokens: int | None = None
    context_tokens: int | None = None
    created: str = ""

    def key(self) -> tuple[str, str, int, int, int]:
        return (self.config_hash, self.task, self.length, self.sample, self.seed)


ROW_FIELDS = tuple(f.name for f in fields(ResultRow))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _refuse(path: Path, why: str) -> StoreError:
    return StoreError(
        f"{path} {why}; it was left untouched. Give --db a new file name (or an existing ctxsparse study database)."
    )


def verify(path: Path) -> None:
    """Raise StoreError unless path is a ctxsparse study database of this schema, intact. Read-only."""
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(SQLITE_MAGIC) or len(header) < 100:
        raise _refuse(path, "is not an SQLite database")
    if int.from_bytes(header[68:72], "big") != APPLICATION_ID:
        raise _refuse(path, "is an SQLite database of another application (no ctxsparse application id)")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchall()
            if check != [("ok",)]:
                raise _refuse(path, f"is a corrupt database (integrity check: {check[:3]})")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"meta", "runs", "results"} <= tables:
                raise _refuse(path, "lacks the ctxsparse study tables")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        raise _refuse(path, f"cannot be read as a database ({err})") from err
    if meta.get("application") != APPLICATION:
        raise _refuse(path, "has no ctxsparse study meta table entry")
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise _refuse(
            path,
            f"uses study schema {meta.get('schema_version')!r}, this ctxsparse reads schema {SCHEMA_VERSION}",
        )


def check_writable(path: Path) -> None:
    """Raise StoreError unless a database at path can be created or written (before any work starts).

    SQLite writes <db>-wal and <db>-shm beside the database, so the folder must be writable too.
    """
    if path.is_dir():
        raise StoreError(f"{path} is a directory; give --db a file name such as {path / 'results.db'}.")
    folder = path.parent if str(path.parent) else Path(".")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StoreError(f"{existing} is not a folder, so {path} cannot be created; give --db a path in a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(
            f"The folder {existing} is read-only, so the database {path} (and its -wal and -shm files) cannot be "
            "written there; give --db a path in a writable folder."
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(
            f"{path} is read-only (or unreadable); make it writable (chmod u+rw {path}) or give --db another file."
        )


def preflight(path: str | os.PathLike) -> None:
    """Everything about --db that can be checked before models load: writable, and ours if it exists."""
    path = Path(path)
    check_writable(path)
    if path.exists() and path.stat().st_size > 0:
        verify(path)


class StudyStore:
    """Open with StudyStore.open(path); add() commits each row on its own."""

    def __init__(self, path: Path, conn: sqlite3.Connection, writable: bool = True) -> None:
        self.path = path
        self.conn = conn
        self.writable = writable

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = True) -> StudyStore:
        """Open (verifying first) or create the database at path; create=False requires it to exist.

        Safe when several processes create the same new file at once: the schema is written inside one
        BEGIN IMMEDIATE transaction that first looks whether another process has written it already.
        """
        path = Path(path)
        if path.is_dir():
            raise StoreError(f"{path} is a directory; give a database file name such as {path / 'results.db'}.")
        fresh = not path.exists() or path.stat().st_size == 0
        if fresh and not create:
            raise FileNotFoundError(f"No study database at {path}; run `ctxsparse study --db {path}` first.")
        if not fresh:
            verify(path)
        elif path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        writable = create or os.access(path, os.W_OK)
        if not writable:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30)
            conn.row_factory = sqlite3.Row
            return cls(path, conn, writable=False)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

        def set_up() -> None:
            if fresh:
                _create_schema(conn, path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            if create:
                conn.execute(_SAMPLES_TABLE)

        try:
            _retry_locked(set_up)
        except sqlite3.OperationalError as err:
            conn.close()
            raise StoreError(f"{path} cannot be written ({err}); give --db a file in a writable folder.") from err
        return cls(path, conn)

    def close(self) -> None:
        """Checkpoint the WAL into the database file (so the file alone holds every row), then close."""
        if self.writable:
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another process is reading; SQLite checkpoints when the last connection closes
        self.conn.close()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_run(self, argv: list[str], plan: dict[str, Any], versions: dict[str, Any]) -> int:
        """Record one invocation of the study; returns its id (stored with each row it writes)."""
        with self._transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (started, argv, plan, versions) VALUES (?, ?, ?, ?)",
                (_now(), json.dumps(argv), json.dumps(plan), json.dumps(versions)),
            )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int) -> None:
        with self._transaction():
            self.conn.execute("UPDATE runs SET finished = ? WHERE id = ?", (_now(), run_id))

    def done_keys(self) -> set[tuple[str, str, int, int, int]]:
        """Keys (config_hash, task, length, sample, seed) of every stored row."""
        cur = self.conn.execute("SELECT config_hash, task, length, sample, seed FROM results")
        return {tuple(r) for r in cur}

    def add(self, row: ResultRow) -> bool:
        """Insert and commit one row; False (and no change) when its key is already stored."""
        values = asdict(row)
        values["created"] = values["created"] or _now()
        columns = ", ".join(ROW_FIELDS)
        marks = ", ".join(f":{name}" for name in ROW_FIELDS)
        with self._transaction():
            cur = self.conn.execute(
                f"INSERT INTO results ({columns}) VALUES ({marks}) "
                "ON CONFLICT (config_hash, task, length, sample, seed) DO NOTHING",
                values,
            )
        return cur.rowcount == 1

    def delete(self, keys: list[tuple[str, str, int, int, int]]) -> int:
        """Delete the rows with these (config_hash, task, length, sample, seed) keys in one transaction."""
        with self._transaction():
            cur = self.conn.executemany(
                "DELETE FROM results WHERE config_hash = ? AND task = ? AND length = ? AND sample = ? AND seed = ?",
                keys,
            )
        return cur.rowcount

    def record_sample_hashes(self, hashes: dict[SampleKey, str]) -> None:
        """Remember what the generators make now for these samples (the reference for stale rows)."""
        now = _now()
        with self._transaction():
            self.conn.executemany(
                "INSERT INTO samples (model, task, length, sample, seed, sample_hash, checked) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, task, length, sample, seed) "
                "DO UPDATE SET sample_hash = excluded.sample_hash, checked = excluded.checked",
                [(*key, value, now) for key, value in hashes.items()],
            )

    def sample_hashes(self) -> dict[SampleKey, str]:
        """(model, task, length, sample, seed) -> the sample_hash the generator last made for it."""
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "samples" not in tables:
            return {}
        cur = self.conn.execute("SELECT model, task, length, sample, seed, sample_hash FROM samples")
        return {tuple(r[:5]): r[5] for r in cur}

    def rows(self) -> list[dict[str, Any]]:
        """Every result row as a dict, in insertion order."""
        return [dict(r) for r in self.conn.execute("SELECT * FROM results ORDER BY rowid")]

    def runs(self) -> list[dict[str, Any]]:
        out = []
        for r in self.conn.execute("SELECT * FROM runs ORDER BY id"):
            d = dict(r)
            for key in ("argv", "plan", "versions"):
                d[key] = json.loads(d[key])
            out.append(d)
        return out

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self.conn)


def _retry_locked(step: Callable[[], None], wait_s: float = BUSY_TIMEOUT_MS / 1000) -> None:
    """Run step, again while SQLite says the database is locked: where waiting could deadlock (two
    processes switching one new file to WAL at once) SQLite answers at once instead of calling its busy
    handler. Every step here is idempotent and a failed transaction rolls back, so a retry is safe."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return step()
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.005 + 0.045 * random.random())


def _create_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Write the schema of a new database, unless another process has just done so (then check it is ours).

    Header fields and tables are written in rollback mode before WAL starts, so the file's own header
    carries the application id from its first commit.
    """
    with _Transaction(conn):
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables:
            if not {"meta", "runs", "results"} <= tables or conn.execute("PRAGMA application_id").fetchone()[0] != (
                APPLICATION_ID
            ):
                raise _refuse(path, "was just created by another program")
            return
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION)), ("created", _now())],
        )


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

"""The agent's results database (SQLite): one row per episode, one per turn; an episode is one transaction.

Each episode has a key made of everything that decides its outcome (task, model, method, sparsity, phase,
seed, turn and token limits), so a rerun with the same settings skips what is stored and a killed run loses
only the episode in flight.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ctxsparse.agent.records import EpisodeRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT NOT NULL, settings TEXT NOT NULL, versions TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS episodes (
  id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, run_id INTEGER,
  task TEXT, model TEXT, method TEXT, sparsity REAL, phase TEXT, seed INTEGER,
  resolved INTEGER, turns INTEGER, tokens_generated INTEGER, final_context_tokens INTEGER,
  exit_reason TEXT, isolation TEXT, wall_s REAL, reprefills INTEGER, patch TEXT, test_output TEXT, created TEXT
);
CREATE TABLE IF NOT EXISTS turns (
  episode_id INTEGER NOT NULL REFERENCES episodes(id), turn INTEGER NOT NULL,
  context_tokens INTEGER, prefilled_tokens INTEGER, question_tokens INTEGER, generated_tokens INTEGER,
  reprefill INTEGER, density REAL, mass_recall REAL, top1_agreement REAL, kl REAL, decode_s REAL,
  reply TEXT, command TEXT, returncode INTEGER, limits_hit TEXT, PRIMARY KEY (episode_id, turn)
);
"""

_EPISODE_FIELDS = (
    "task model method sparsity phase seed resolved turns tokens_generated final_context_tokens exit_reason "
    "isolation wall_s reprefills patch test_output"
).split()
_TURN_FIELDS = (
    "turn context_tokens prefilled_tokens question_tokens generated_tokens reprefill density mass_recall "
    "top1_agreement kl decode_s reply command returncode"
).split()


def episode_key(**settings: Any) -> str:
    """A stable key for an episode's settings (sorted JSON)."""
    return json.dumps(settings, sort_keys=True, default=str)


class EpisodeStore:
    """Open with EpisodeStore.open(path); a context manager that closes the connection."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = True) -> EpisodeStore:
        path = Path(path)
        if not create and not path.exists():
            raise FileNotFoundError(f"No agent database at {path}; run `ctxsparse agent --db {path} ...` first.")
        conn = sqlite3.connect(path, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        if create:
            conn.executescript(SCHEMA)
        return cls(conn, path)

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc) -> None:
        self.conn.close()

    def start_run(self, settings: dict[str, Any], versions: dict[str, Any]) -> int:
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO agent_runs (started, settings, versions) VALUES (?, ?, ?)",
                (datetime.now(timezone.utc).isoformat(timespec="seconds"), json.dumps(settings), json.dumps(versions)),
            )
        return int(cur.lastrowid)

    def done_keys(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT key FROM episodes")}

    def add_episode(self, key: str, record: EpisodeRecord, run_id: int | None = None) -> int:
        """Store the episode and its turns in one transaction (all or nothing)."""
        values = [getattr(record, f) for f in _EPISODE_FIELDS]
        with self.conn:
            cur = self.conn.execute(
                f"INSERT INTO episodes (key, run_id, {', '.join(_EPISODE_FIELDS)}, created) "
                f"VALUES (?, ?, {', '.join('?' * len(_EPISODE_FIELDS))}, ?)",
                [key, run_id, *values, datetime.now(timezone.utc).isoformat(timespec="seconds")],
            )
            episode_id = int(cur.lastrowid)
            self.conn.executemany(
                f"INSERT INTO turns (episode_id, {', '.join(_TURN_FIELDS)}, limits_hit) "
                f"VALUES (?, {', '.join('?' * len(_TURN_FIELDS))}, ?)",
                [
                    [episode_id, *(getattr(t, f) for f in _TURN_FIELDS), json.dumps(t.limits_hit)]
                    for t in record.turn_records
                ],
            )
        return episode_id

    def episodes(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM episodes ORDER BY id")]

    def turns(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT t.*, e.task, e.model, e.method, e.sparsity, e.phase FROM turns t "
            "JOIN episodes e ON e.id = t.episode_id ORDER BY t.episode_id, t.turn"
        )
        return [dict(r) | {"limits_hit": json.loads(r["limits_hit"] or "[]")} for r in rows]

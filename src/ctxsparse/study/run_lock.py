"""One study writes to a database at a time: a second `ctxsparse study` on the same file waits for the first.

The lock is an advisory lock (flock) on '<db>-lock' beside the database, held while a study runs. The
operating system drops it when its holder ends in any way (exit, crash, kill -9), so a dead study never
blocks the next one. The waiting study then reads which rows are done and runs only the others, so no
(configuration, sample) is computed twice. On systems without fcntl (Windows) studies are not serialised;
the database's primary key still keeps every row once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def lock_path(db: str | os.PathLike) -> Path:
    db = Path(db)
    return db.with_name(db.name + "-lock")


@contextmanager
def study_lock(db: str | os.PathLike, log: TextIO | None = sys.stderr) -> Iterator[None]:
    """Hold the database's study lock for the block; wait (saying so once, on log) while another holds it."""
    if fcntl is None:
        yield
        return
    path = lock_path(db)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if log is not None:
                print(
                    f"waiting: another ctxsparse study ({holder}) is writing to {db}; this one continues with the "
                    "rows it leaves undone when it ends (Ctrl-C to stop waiting).",
                    file=log,
                    flush=True,
                )
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)

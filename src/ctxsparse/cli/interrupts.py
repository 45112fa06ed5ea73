"""Ctrl-C and SIGTERM end every verb the same way: finally-blocks run (a study database is checkpointed and
its lock released), then one line says what was kept."""

from __future__ import annotations

import importlib
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Extension modules a verb loads first. An exception raised inside their import can leave them half
#: loaded (a later import then fails with an unrelated error), so a signal waits until they are in.
HEAVY_IMPORTS: dict[str, tuple[str, ...]] = {
    "models": (),
    "report": ("numpy", "matplotlib"),
}
DEFAULT_HEAVY_IMPORTS = ("numpy", "torch", "transformers")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same cleanup runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def install_handlers() -> None:
    """SIGTERM raises Terminated (a KeyboardInterrupt); SIGINT keeps Python's KeyboardInterrupt."""
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread (main() called from a worker thread): leave them as they are
        pass


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block; one that arrived is raised (as usual) right after it."""
    received: list[int] = []
    try:
        previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in _SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise Terminated() if received[0] == signal.SIGTERM else KeyboardInterrupt()


def preload(verb: str | None) -> None:
    """Import the verb's heavy extension modules with signals held (see HEAVY_IMPORTS)."""
    if verb is None:
        return
    with deferred_signals():
        for name in HEAVY_IMPORTS.get(verb, DEFAULT_HEAVY_IMPORTS):
            try:
                importlib.import_module(name)
            except ImportError:
                pass  # the verb itself says what to install when it needs the module


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal number, as shells report it."""
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)


def rows_saved(db: Path) -> str:
    """What an interrupted study leaves: the rows committed so far, and how to resume."""
    if not db.is_file() or db.stat().st_size == 0:
        return f"nothing was written to {db}; run the same command to start again."
    try:
        import sqlite3

        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            count = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        finally:
            conn.close()
    except Exception:  # an interrupted open of a new file, or not a study database: say no count
        return f"finished rows are saved in {db}; run the same command to resume."
    return f"{count} rows are saved in {db}; run the same command to resume."


def message(verb: str | None, note: str | None, err: KeyboardInterrupt) -> str:
    """The one line printed for an interrupt at any moment (imports, loading, running)."""
    how = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
    return f"ctxsparse{' ' + verb if verb else ''}: {how}: {note or 'nothing was written.'}"

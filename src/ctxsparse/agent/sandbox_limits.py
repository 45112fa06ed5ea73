"""Hard resource limits for one sandboxed command, and the bounding of how many processes it may start.

The process count is enforced by a pids cgroup of its own where the cgroup file system is writable (the kernel
exempts root from RLIMIT_NPROC, namespaces or not), else by RLIMIT_NPROC for a non-root user; as root
without a writable pids cgroup nothing bounds it, and process_limit_mode() says so ("none").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import resource
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1
try:
    _LIBC = (
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True) if sys.platform == "linux" else None
    )
except OSError:
    _LIBC = None


@dataclass(frozen=True)
class Limits:
    """Per-command limits; sizes in bytes, times in seconds."""

    wall_s: float = 30.0
    cpu_s: int = 30
    memory_bytes: int = 2 << 30
    file_bytes: int = 64 << 20
    processes: int = 64
    output_bytes: int = 10_000
    output_cap_bytes: int = 4 << 20
    tmp_bytes: int = 64 << 20
    repo_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) <= 0:
                raise ValueError(f"Sandbox limit {name} must be > 0; got {getattr(self, name)}.")


PIDS_V1 = Path("/sys/fs/cgroup/pids")
PIDS_V2 = Path("/sys/fs/cgroup")


@functools.cache
def _pids_parent() -> Path | None:
    """A pids cgroup folder we may create children in (probed by creating one), or None."""
    candidates = [PIDS_V1]
    try:
        if "pids" in (PIDS_V2 / "cgroup.subtree_control").read_text().split():
            candidates.append(PIDS_V2)
    except OSError:
        pass
    for parent in candidates:
        probe = parent / f"ctxsparse-probe-{os.getpid()}"
        try:
            probe.mkdir()
            ok = (probe / "pids.max").exists()
            probe.rmdir()
        except OSError:
            continue
        if ok:
            return parent
    return None


def process_limit_mode() -> str:
    """How the process-count limit is enforced here: 'cgroup', 'rlimit' (non-root users) or 'none'."""
    if _pids_parent() is not None:
        return "cgroup"
    return "rlimit" if os.getuid() != 0 else "none"


class PidsCgroup:
    """A throw-away pids cgroup holding one command and everything it starts."""

    def __init__(self, limit: int) -> None:
        parent = _pids_parent()
        self.path: Path | None = None
        if parent is None:
            return
        path = parent / f"ctxsparse-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(limit))
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            return
        self.path = path

    def join(self) -> None:
        """Called in the child before exec: move this process into the cgroup."""
        if self.path is not None:
            with open(self.path / "cgroup.procs", "w") as fh:
                fh.write(str(os.getpid()))

    def limited(self) -> bool:
        """Did a fork fail because the cgroup was full?"""
        try:
            events = (self.path / "pids.events").read_text() if self.path else ""
        except OSError:
            return False
        return any(line.startswith("max ") and line.split()[1] != "0" for line in events.splitlines())

    def close(self) -> None:
        """Kill whatever is left inside, then remove the cgroup."""
        if self.path is None:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)


def _user_process_count() -> int:
    """Processes this user runs now (RLIMIT_NPROC counts them all outside a user namespace)."""
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                continue
    return count


def limit_setter(limits: Limits, cgroup: PidsCgroup) -> Callable[[], None]:
    """preexec_fn: join the pids cgroup and set the rlimits in the child just before it execs (inherited by
    everything it starts)."""
    nproc = limits.processes
    if os.getuid() != 0:
        # RLIMIT_NPROC counts every process of the user (a user namespace also checks its creator's count), so
        # allow the ones already running. Root is exempt from it: the pids cgroup bounds root's commands.
        nproc += _user_process_count()

    def apply() -> None:
        cgroup.join()
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # die with the runner, even when it is killed
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def signal_limits(returncode: int) -> list[str]:
    """Map a death by signal (negative code, or 128 + n from a shell) to the limit that sent it."""
    sig = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    return {signal.SIGXCPU: ["cpu_time"], signal.SIGXFSZ: ["file_size"]}.get(sig, [])

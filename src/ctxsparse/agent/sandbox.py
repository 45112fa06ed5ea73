"""Run one model-written shell command inside a throw-away copy of a task repository, under hard limits.

Isolation, strongest available first (the level reached is reported with every result), is described and
built in sandbox_isolation; the per-command limits and the process-count bound live in sandbox_limits.
This module is the run loop: start the command, read its output under the wall clock and the output cap,
and report which limits stopped it.

Resource limits (every level): wall clock (the whole process group is killed), CPU seconds, address space,
file size, process count and the bytes of output read back (the command is stopped past a hard cap).
"""

from __future__ import annotations

import functools
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ctxsparse.agent.sandbox_isolation import (
    ISOLATION_LEVELS,
    NAMESPACES,
    NETWORK,
    RLIMITS,
    SYSTEM_DIRS,
    command_argv_and_env,
    scrubbed_env,
)
from ctxsparse.agent.sandbox_limits import Limits, PidsCgroup, limit_setter, process_limit_mode, signal_limits

__all__ = [
    "ISOLATION_LEVELS",
    "NAMESPACES",
    "NETWORK",
    "RLIMITS",
    "SYSTEM_DIRS",
    "CommandResult",
    "Limits",
    "available_isolation",
    "process_limit_mode",
    "run_command",
    "scrubbed_env",
]


@dataclass
class CommandResult:
    """What one command did: its output (truncated), exit status and which limits stopped it."""

    output: str
    returncode: int
    isolation: str
    wall_s: float
    limits_hit: list[str] = field(default_factory=list)
    output_bytes: int = 0


@functools.cache
def available_isolation() -> str:
    """The strongest isolation level this machine allows (probed once per process)."""
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return RLIMITS
    levels = [NETWORK]
    if all(shutil.which(t) for t in ("mount", "chroot", "setpriv")):
        levels.insert(0, NAMESPACES)
    with tempfile.TemporaryDirectory(prefix="ctxsparse-probe-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        for level in levels:
            try:
                result = run_command("echo ok > probe && cat probe", repo, Limits(wall_s=10), isolation=level)
            except OSError:
                continue
            if result.returncode == 0 and result.output.strip() == "ok":
                return level
    return RLIMITS


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_output(proc: subprocess.Popen, limits: Limits, deadline: float) -> tuple[bytes, bytes, int, list[str]]:
    """Drain stdout until exit, deadline or the hard cap; keep the head and tail for the model."""
    head, tail, total, hit = bytearray(), bytearray(), 0, []
    half = limits.output_bytes // 2
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            hit.append("wall_time")
            break
        if not sel.select(timeout=min(left, 0.5)):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        total += len(chunk)
        if len(head) < half:
            take = half - len(head)
            head += chunk[:take]
            chunk = chunk[take:]
        tail = (tail + chunk)[-half:]
        if total > limits.output_cap_bytes:
            hit.append("output_cap")
            break
    sel.close()
    return bytes(head), bytes(tail), total, hit


def _render(head: bytes, tail: bytes, total: int) -> str:
    text = head.decode("utf-8", errors="replace")
    if total > len(head) + len(tail):
        text += f"\n[... {total - len(head) - len(tail)} bytes of output elided ...]\n"
    return text + tail.decode("utf-8", errors="replace")


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def run_command(
    command: str,
    repo: str | os.PathLike,
    limits: Limits | None = None,
    isolation: str | None = None,
    env: dict[str, str] | None = None,
) -> CommandResult:
    """Run `command` with bash in `repo` (a throw-away copy) under `limits`; never raises on the command's fault."""
    limits = limits or Limits()
    isolation = isolation or available_isolation()
    if isolation not in ISOLATION_LEVELS:
        raise ValueError(f"Unknown isolation level {isolation!r}; choose one of {', '.join(ISOLATION_LEVELS)}.")
    repo = Path(repo).resolve()
    if not repo.is_dir():
        raise FileNotFoundError(f"The sandbox repository {repo} does not exist.")
    start = time.monotonic()
    cgroup = PidsCgroup(limits.processes)
    try:
        with tempfile.TemporaryDirectory(prefix="ctxsparse-cmd-") as scratch:
            argv, child_env, cwd = command_argv_and_env(command, repo, Path(scratch), limits, isolation, env)
            proc = subprocess.Popen(
                argv,
                cwd=cwd or scratch,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=limit_setter(limits, cgroup),
            )
            try:
                head, tail, total, hit = _read_output(proc, limits, start + limits.wall_s)
            finally:
                if proc.poll() is None:
                    _kill_group(proc)
                proc.stdout.close()
                returncode = proc.wait()
                # Whatever left the process group dies with the PID namespace (namespace levels) or the cgroup.
                _kill_group(proc)
        processes_limited = cgroup.limited()
    finally:
        cgroup.close()
    hit += [h for h in signal_limits(returncode) if h not in hit]
    text = _render(head, tail, total)
    if processes_limited or "fork: retry" in text or "fork: Resource temporarily unavailable" in text:
        hit.append("processes")
    if total > limits.output_bytes:
        hit.append("output_truncated")
    if _tree_bytes(repo) > limits.repo_bytes:
        hit.append("repo_size")
    if hit:
        text += f"\n[sandbox: stopped or limited by {', '.join(hit)}]"
    return CommandResult(text, returncode, isolation, time.monotonic() - start, hit, total)

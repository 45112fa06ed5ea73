"""Run one model-written shell command inside a throw-away copy of a task repository, under hard limits.

Isolation, strongest available first (the level reached is reported with every result):

- "namespaces": `unshare` puts the command in new user, network, PID and mount namespaces. Its root is a
  fresh read-only tmpfs holding read-only binds of the system folders and the Python installation, the
  repository copy at /repo (the only writable place besides a size-capped /tmp), no network devices but a
  downed loopback, and every capability dropped before the command starts. Killing the namespace's first
  process kills every process in it, so nothing outlives a timeout.
- "network": where mounts are not allowed (some containers), new user, network and PID namespaces only: no
  network and a per-namespace process count, but the file system is the caller's (user rights apply).
- "rlimits": plain subprocess in its own session, cwd in the copy; resource limits and a scrubbed
  environment still apply, but the command can see the network and the rest of the file system, and a
  process that starts a session of its own outlives the wall-clock kill (its CPU time stays capped).

Resource limits (every level): wall clock (the whole process group is killed), CPU seconds, address space,
file size, process count and the bytes of output read back (the command is stopped past a hard cap).

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
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

NAMESPACES = "namespaces"
NETWORK = "network"
RLIMITS = "rlimits"
ISOLATION_LEVELS = (NAMESPACES, NETWORK, RLIMITS)

# Folders bound read-only into the private root (those that exist; symlinks are recreated as symlinks).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")


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


@dataclass
class CommandResult:
    """What one command did: its output (truncated), exit status and which limits stopped it."""

    output: str
    returncode: int
    isolation: str
    wall_s: float
    limits_hit: list[str] = field(default_factory=list)
    output_bytes: int = 0


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


class _PidsCgroup:
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


def _python_roots() -> list[str]:
    """The Python installation's folders, so `python -m pytest` works inside the private root."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent.parent)}
    return sorted(r for r in roots if r and Path(r).is_dir())


def _setup_script() -> str:
    """Shell run as root of the new user namespace: build the private root, then drop every capability."""
    return r"""
set -e
R="$CTXS_ROOT"
mount -t tmpfs -o size=1m,mode=755 ctxsroot "$R"
mkdir -p "$R/repo" "$R/tmp" "$R/proc" "$R/dev"
for d in $CTXS_RO_DIRS; do
  if [ -L "$d" ]; then ln -s "$(readlink "$d")" "$R$d"
  elif [ -d "$d" ]; then mkdir -p "$R$d"; mount --rbind "$d" "$R$d"; mount -o remount,bind,ro "$R$d"
  fi
done
for n in null zero random urandom; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
ln -s /proc/self/fd "$R/dev/fd"
mount --bind "$CTXS_REPO" "$R/repo"
mount -t tmpfs -o size="$CTXS_TMP_BYTES",mode=1777 ctxstmp "$R/tmp"
mount -t proc proc "$R/proc" || true
mount -o remount,ro,bind "$R"
exec "$CTXS_CHROOT" "$R" "$CTXS_SETPRIV" --bounding-set=-all --inh-caps=-all --no-new-privs \
  /bin/bash -c 'cd /repo || exit 97
eval "$CTXS_COMMAND"'
"""


def _unshare_argv() -> list[str]:
    return ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child"]


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


def scrubbed_env(home: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: no credentials or proxies of the caller, Python on PATH, HOME/TMPDIR in scratch."""
    python_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PAGER": "cat",
        "MANPAGER": "cat",
        "GIT_PAGER": "cat",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PIP_NO_INDEX": "1",
        "TQDM_DISABLE": "1",
    }
    return env | (extra or {})


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


def _limit_setter(limits: Limits, isolation: str, cgroup: _PidsCgroup):
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


def _argv_and_env(command: str, repo: Path, scratch: Path, limits: Limits, isolation: str, env_extra):
    if isolation == NAMESPACES:
        root = scratch / "root"
        root.mkdir(exist_ok=True)
        env = scrubbed_env("/tmp", env_extra) | {
            "CTXS_ROOT": str(root),
            "CTXS_REPO": str(repo),
            "CTXS_TMP_BYTES": str(limits.tmp_bytes),
            "CTXS_RO_DIRS": " ".join([*SYSTEM_DIRS, *_python_roots()]),
            "CTXS_COMMAND": command,
            "CTXS_CHROOT": shutil.which("chroot") or "chroot",
            "CTXS_SETPRIV": shutil.which("setpriv") or "setpriv",
        }
        return [*_unshare_argv(), "/bin/sh", "-c", _setup_script()], env, None
    home = scratch / "home"
    home.mkdir(exist_ok=True)
    argv = ["/bin/bash", "-c", command]
    if isolation == NETWORK:
        argv = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", *argv]
    return argv, scrubbed_env(str(home), env_extra), str(repo)


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


def _signal_limits(returncode: int) -> list[str]:
    """Map a death by signal (negative code, or 128 + n from a shell) to the limit that sent it."""
    sig = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    return {signal.SIGXCPU: ["cpu_time"], signal.SIGXFSZ: ["file_size"]}.get(sig, [])


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
    cgroup = _PidsCgroup(limits.processes)
    try:
        with tempfile.TemporaryDirectory(prefix="ctxsparse-cmd-") as scratch:
            argv, child_env, cwd = _argv_and_env(command, repo, Path(scratch), limits, isolation, env)
            proc = subprocess.Popen(
                argv,
                cwd=cwd or scratch,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_limit_setter(limits, isolation, cgroup),
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
    hit += [h for h in _signal_limits(returncode) if h not in hit]
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

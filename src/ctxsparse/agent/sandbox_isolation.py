"""Isolation levels of the sandbox and the command line and environment that reach each of them.

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
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ctxsparse.agent.sandbox_limits import Limits

NAMESPACES = "namespaces"
NETWORK = "network"
RLIMITS = "rlimits"
ISOLATION_LEVELS = (NAMESPACES, NETWORK, RLIMITS)

# Folders bound read-only into the private root (those that exist; symlinks are recreated as symlinks).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")


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
# /tmp first: a Python installation that lives under /tmp is then bound inside the private /tmp, not hidden.
mount -t tmpfs -o size="$CTXS_TMP_BYTES",mode=1777 ctxstmp "$R/tmp"
for d in $CTXS_RO_DIRS; do
  if [ -L "$d" ]; then ln -s "$(readlink "$d")" "$R$d"
  elif [ -d "$d" ]; then mkdir -p "$R$d"; mount --rbind "$d" "$R$d"; mount -o remount,bind,ro "$R$d"
  fi
done
for n in null zero random urandom; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
ln -s /proc/self/fd "$R/dev/fd"
mount --bind "$CTXS_REPO" "$R/repo"
mount -t proc proc "$R/proc" || true
mount -o remount,ro,bind "$R"
exec "$CTXS_CHROOT" "$R" "$CTXS_SETPRIV" --bounding-set=-all --inh-caps=-all --no-new-privs \
  /bin/bash -c 'cd /repo || exit 97
eval "$CTXS_COMMAND"'
"""


def _unshare_argv() -> list[str]:
    return ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child"]


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


def command_argv_and_env(
    command: str, repo: Path, scratch: Path, limits: Limits, isolation: str, env_extra: dict[str, str] | None
) -> tuple[list[str], dict[str, str], str | None]:
    """The argv, environment and working folder (None: the scratch folder) that run `command` at `isolation`."""
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

"""A throw-away copy of a task repository, its diff against the original, and scoring on a fresh copy.

The copy's git metadata lives outside the copy (GIT_DIR in a sibling folder), so nothing the agent writes
into the repository can change how git behaves when the host computes the diff; system and user git
configuration are ignored, and hooks and fsmonitor are off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ctxsparse.agent.coding_task import CodingTask
from ctxsparse.agent.sandbox import Limits, run_command

HIDDEN_DIR = "_hidden_tests"
_GIT_OPTIONS = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "user.name=ctxsparse"]
_GIT_OPTIONS += ["-c", "user.email=ctxsparse@localhost", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false"]
_IGNORED = "__pycache__/\n*.pyc\n.pytest_cache/\n"


def _git(git_dir: Path, work_tree: Path, *args: str, stdin: bytes | None = None) -> bytes:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_DIR": str(git_dir),
        "GIT_WORK_TREE": str(work_tree),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "HOME": str(git_dir),
        "LANG": "C",
    }
    done = subprocess.run(
        ["git", *_GIT_OPTIONS, *args], cwd=work_tree, env=env, input=stdin, capture_output=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


@dataclass
class Workspace:
    """A temporary copy of a task repository with a git baseline kept outside it; remove with close()."""

    root: Path
    repo: Path
    git_dir: Path

    @classmethod
    def create(cls, source: str | os.PathLike) -> Workspace:
        if shutil.which("git") is None:
            raise RuntimeError("git is needed to compute the agent's diff; install git.")
        root = Path(tempfile.mkdtemp(prefix="ctxsparse-episode-"))
        repo, git_dir = root / "repo", root / "git"
        shutil.copytree(source, repo, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        _git(git_dir, repo, "init", "-q")
        (git_dir / "info").mkdir(exist_ok=True)
        (git_dir / "info" / "exclude").write_text(_IGNORED, encoding="utf-8")
        _git(git_dir, repo, "add", "-A")
        _git(git_dir, repo, "commit", "-q", "--allow-empty", "-m", "task baseline")
        return cls(root, repo, git_dir)

    def diff(self) -> str:
        """The agent's changes (new files included) as a git patch against the original repository."""
        _git(self.git_dir, self.repo, "add", "-A")
        return _git(self.git_dir, self.repo, "diff", "--cached", "--binary", "HEAD").decode("utf-8", errors="replace")

    def new_files(self) -> list[Path]:
        """Files the agent added (untracked relative to the original repository)."""
        out = _git(self.git_dir, self.repo, "ls-files", "--others", "--exclude-standard", "-z").decode(
            "utf-8", "replace"
        )
        return [self.repo / p for p in out.split("\0") if p]

    def apply(self, patch: str) -> None:
        """Apply a patch made by diff() to this (fresh) copy; RuntimeError when it does not apply."""
        if patch.strip():
            _git(self.git_dir, self.repo, "apply", "--whitespace=nowarn", "-", stdin=patch.encode("utf-8"))

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Verdict:
    """Whether the hidden tests passed on a fresh copy with the patch applied, and what pytest said."""

    resolved: bool
    output: str
    patch_applied: bool


def hidden_test_command() -> str:
    """pytest over the hidden tests only, ignoring any conftest.py, ini file or cache the agent may have added."""
    return f"python -m pytest -q -p no:cacheprovider --noconftest -c {HIDDEN_DIR}/pytest.ini --rootdir . {HIDDEN_DIR}"


def score_patch(task: CodingTask, patch: str, limits: Limits | None = None, isolation: str | None = None) -> Verdict:
    """Resolved iff the hidden tests pass on a fresh copy of the task with `patch` applied (run in the sandbox)."""
    limits = limits or Limits(wall_s=120, cpu_s=120)
    with Workspace.create(task.repo) as fresh:
        try:
            fresh.apply(patch)
        except RuntimeError as err:
            return Verdict(False, f"The patch does not apply: {err}", False)
        hidden = fresh.repo / HIDDEN_DIR
        shutil.rmtree(hidden, ignore_errors=True)
        if hidden.is_symlink() or hidden.exists():
            hidden.unlink()
        shutil.copytree(task.hidden_tests, hidden)
        (hidden / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        result = run_command(hidden_test_command(), fresh.repo, limits, isolation=isolation)
    return Verdict(result.returncode == 0, result.output, True)

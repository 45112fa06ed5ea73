"""Local coding tasks: tiny repositories with an issue, tests the agent may run, and hidden tests that decide.

A task folder holds `issue.md` (what the agent is told), `repo/` (the code and its visible tests) and
`hidden_tests/test_*.py` (copied in only when the episode is scored). The shipped tasks live in
`task_repos/` next to this module; any folder of the same shape can be given by path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SHIPPED_ROOT = Path(__file__).resolve().parent / "task_repos"


@dataclass(frozen=True)
class CodingTask:
    """One local coding task (see the module docstring for the folder layout)."""

    name: str
    folder: Path

    @property
    def issue(self) -> str:
        return (self.folder / "issue.md").read_text(encoding="utf-8").strip()

    @property
    def repo(self) -> Path:
        return self.folder / "repo"

    @property
    def hidden_tests(self) -> Path:
        return self.folder / "hidden_tests"


def shipped_task_names() -> list[str]:
    """Names of the tasks shipped with ctxsparse, sorted."""
    return sorted(p.name for p in SHIPPED_ROOT.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def check_task_folder(folder: str | os.PathLike) -> CodingTask:
    """A CodingTask for `folder`, or a ValueError saying which part of the layout is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Task folder {folder} does not exist.")
    if not (folder / "issue.md").is_file():
        raise ValueError(f"Task folder {folder} has no issue.md (the issue text the agent is given).")
    if not (folder / "repo").is_dir():
        raise ValueError(f"Task folder {folder} has no repo/ folder (the code the agent works on).")
    hidden = folder / "hidden_tests"
    if not hidden.is_dir() or not any(hidden.glob("test_*.py")):
        raise ValueError(
            f"Task folder {folder} has no hidden tests: add hidden_tests/test_*.py (they decide whether an "
            "episode resolved the issue)."
        )
    return CodingTask(folder.name, folder)


def load_tasks(spec: str | list[str]) -> list[CodingTask]:
    """Tasks from 'all', a comma-separated list of shipped names, or folder paths; unknown names are refused."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise ValueError("No tasks given; use --tasks all or a comma-separated list of task names or folders.")
    known = shipped_task_names()
    tasks: list[CodingTask] = []
    for name in names:
        if name == "all":
            tasks += [check_task_folder(SHIPPED_ROOT / n) for n in known]
        elif name in known:
            tasks.append(check_task_folder(SHIPPED_ROOT / name))
        elif os.sep in name or Path(name).is_dir():
            tasks.append(check_task_folder(name))
        else:
            raise ValueError(f"Unknown task {name!r}. Known tasks: all, {', '.join(known)}; or give a task folder.")
    seen: dict[str, CodingTask] = {}
    for task in tasks:
        seen.setdefault(task.name, task)
    return list(seen.values())

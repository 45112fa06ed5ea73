"""A mini-swe-agent Environment that runs every command in the sandbox, inside a throw-away task copy.

It implements mini-swe-agent's Environment protocol (execute, get_template_vars, serialize) and its
completion signal: a command whose output starts with COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT (exit status 0)
ends the episode, with the copy's diff against the original as the submission.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ctxsparse.agent.sandbox import (
    NAMESPACES,
    CommandResult,
    Limits,
    available_isolation,
    process_limit_mode,
    run_command,
)
from ctxsparse.agent.workspace import Workspace

SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"


@dataclass
class SandboxConfig:
    """The limits each command runs under and the isolation level requested (None: the strongest available)."""

    limits: Limits = field(default_factory=Limits)
    isolation: str | None = None

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return asdict(self)


class SandboxEnvironment:
    """mini-swe-agent Environment over a Workspace; keeps a CommandResult per executed command."""

    def __init__(self, workspace: Workspace, config: SandboxConfig | None = None) -> None:
        self.workspace = workspace
        self.config = config or SandboxConfig()
        self.isolation = self.config.isolation or available_isolation()
        self.results: list[CommandResult] = []

    def execute(self, action: dict, cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        """Run action['command'] in the sandbox; limits and refusals come back as the command's output."""
        from minisweagent.exceptions import Submitted

        limits = self.config.limits
        if timeout is not None:
            limits = Limits(**(asdict(limits) | {"wall_s": float(timeout)}))
        result = run_command(action.get("command", ""), self.workspace.repo, limits, isolation=self.isolation)
        if "repo_size" in result.limits_hit:
            result.output += "\n" + self._shrink_repo(limits.repo_bytes)
        self.results.append(result)
        output = {
            "output": result.output,
            "returncode": result.returncode,
            "exception_info": "",
            "extra": {"limits_hit": result.limits_hit, "isolation": result.isolation, "wall_s": result.wall_s},
        }
        lines = result.output.lstrip().splitlines()
        if lines and lines[0].strip() == SUBMIT_MARKER and result.returncode == 0:
            submission = self.workspace.diff()
            raise Submitted(
                {"role": "exit", "content": submission, "extra": {"exit_status": "Submitted", "submission": submission}}
            )
        return output

    def _shrink_repo(self, limit: int) -> str:
        """Delete new files (largest first) until the copy fits its size limit again; say what was removed."""
        paths = sorted(self.workspace.new_files(), key=lambda p: p.lstat().st_size, reverse=True)
        removed = []
        for path in paths:
            if repo_size(self.workspace.repo) <= limit:
                break
            path.unlink(missing_ok=True)
            removed.append(str(path.relative_to(self.workspace.repo)))
        return f"[sandbox: the repository exceeded {limit} bytes; removed new files: {', '.join(removed) or 'none'}]"

    @property
    def isolation_label(self) -> str:
        """The isolation level and how the process count is bounded, as stored with each episode."""
        return f"{self.isolation}, processes: {process_limit_mode()}"

    @property
    def cwd(self) -> str:
        """Where commands start, as the command sees it."""
        return "/repo" if self.isolation == NAMESPACES else str(self.workspace.repo)

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        return (
            self.config.model_dump()
            | platform.uname()._asdict()
            | {"cwd": self.cwd, "isolation": self.isolation}
            | kwargs
        )

    def serialize(self) -> dict:
        return {
            "info": {
                "config": {
                    "environment": self.config.model_dump(),
                    "environment_type": f"{type(self).__module__}.{type(self).__name__}",
                    "isolation": self.isolation,
                }
            }
        }


def repo_size(path: str | os.PathLike) -> int:
    """Bytes in the files under `path`."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink())

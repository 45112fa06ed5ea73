"""Run the agentic grid (tasks x (method, sparsity)) into the episode database, skipping stored episodes."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ctxsparse.agent.coding_task import CodingTask
from ctxsparse.agent.environment import SandboxConfig
from ctxsparse.agent.episode import agent_templates, require_mini_swe_agent, run_episode
from ctxsparse.agent.episode_store import EpisodeStore, episode_key
from ctxsparse.agent.sandbox import Limits, available_isolation


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


@dataclass(frozen=True)
class AgentCell:
    """One (method, sparsity) the tasks run under; dense runs once, at sparsity 1."""

    method: str
    sparsity: float


def grid(
    methods: Sequence[str], sparsities: Sequence[float], dense_names: Sequence[str] = ("dense",)
) -> list[AgentCell]:
    """Dense methods once at sparsity 1; sparse methods at every sparsity > 1 (at 1 only when that is all)."""
    if not methods:
        raise ValueError("No methods given; e.g. --methods 'dense;oracle_topk'.")
    if not sparsities or any(s < 1 for s in sparsities):
        raise ValueError(f"Sparsity levels must be >= 1 (1 = dense); got {list(sparsities)}.")
    cells: list[AgentCell] = []
    for method in methods:
        if method.split(":")[0] in dense_names:
            cells.append(AgentCell(method, 1.0))
            continue
        levels = [s for s in sparsities if s > 1] or [1.0]
        cells += [AgentCell(method, float(s)) for s in levels]
    return list(dict.fromkeys(cells))


@dataclass
class AgentPlan:
    """Everything that decides the episodes of a run."""

    model: str
    tasks: list[CodingTask]
    cells: list[AgentCell]
    max_turns: int = 50
    max_new_tokens: int = 512
    phase: str = "question"
    device: str = "cpu"
    dtype: str | None = None
    limits: Limits = field(default_factory=Limits)
    trace: bool = True
    trajectory_dir: str | None = None

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"--max-turns must be >= 1; got {self.max_turns}.")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1; got {self.max_new_tokens}.")
        if not self.tasks:
            raise ValueError("No tasks to run.")

    def episodes(self) -> list[tuple[str, CodingTask, AgentCell]]:
        """(key, task, cell) for every episode, in run order."""
        out = []
        for cell in self.cells:
            for task in self.tasks:
                key = episode_key(
                    task=task.name,
                    model=self.model,
                    method=cell.method,
                    sparsity=cell.sparsity,
                    phase=self.phase,
                    seed=0,
                    max_turns=self.max_turns,
                    max_new_tokens=self.max_new_tokens,
                )
                out.append((key, task, cell))
        return out

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = [t.name for t in self.tasks]
        return d


def run_plan(
    plan: AgentPlan,
    db: str | os.PathLike,
    progress: Callable[[str], None] = print,
    model_loader: Callable[[], tuple[Any, Any]] | None = None,
) -> dict[str, int]:
    """Run every episode not yet in `db`; each finished episode is committed at once. Returns counts."""
    require_mini_swe_agent()
    from ctxsparse.agent.harness_model import SparseHarnessModel
    from ctxsparse.models import load_model
    from ctxsparse.versions import versions

    templates = agent_templates()
    with EpisodeStore.open(db) as store:
        todo = [(k, t, c) for k, t, c in plan.episodes() if k not in store.done_keys()]
        total = len(plan.episodes())
        progress(f"{total - len(todo)} of {total} episodes already stored; {len(todo)} to run.")
        if not todo:
            return {"total": total, "ran": 0, "resolved": 0}
        model, tokenizer = model_loader() if model_loader else load_model(plan.model, plan.device, plan.dtype)
        run_id = store.start_run(plan.settings() | {"isolation": available_isolation()}, versions())
        sandbox = SandboxConfig(limits=plan.limits)
        resolved = 0
        for i, (key, task, cell) in enumerate(todo, 1):
            harness = SparseHarnessModel(
                model,
                tokenizer,
                model_name=plan.model,
                method=cell.method,
                sparsity=cell.sparsity,
                phase=plan.phase,
                max_new_tokens=plan.max_new_tokens,
                trace=plan.trace,
                **templates["model"],
            )
            labels = {"model": plan.model, "method": cell.method, "sparsity": cell.sparsity, "phase": plan.phase}
            trajectory = None
            if plan.trajectory_dir:
                name = slug(f"{task.name}-{plan.model}-{cell.method}-{cell.sparsity:g}x-{plan.phase}")
                trajectory = Path(plan.trajectory_dir) / f"{name}.traj.json"
            record = run_episode(
                task, harness, max_turns=plan.max_turns, sandbox=sandbox, labels=labels, trajectory=trajectory
            )
            store.add_episode(key, record, run_id)
            resolved += record.resolved
            progress(
                f"[{i}/{len(todo)}] {task.name} {cell.method}@{cell.sparsity:g}x: "
                f"{'resolved' if record.resolved else 'unresolved'}, {record.turns} turns, exit {record.exit_reason}, "
                f"{record.final_context_tokens} tokens, {record.wall_s:.1f} s"
            )
    return {"total": total, "ran": len(todo), "resolved": resolved}

"""One agent episode: mini-swe-agent's DefaultAgent, a harness model, the sandbox, then scoring.

The agent's prompts are mini-swe-agent's own text-based configuration (mini_textbased.yaml). Whatever ends
the episode (submission, turn limit, repeated format errors, an exception in the model), its final diff is
scored on a fresh copy with the hidden tests, and the episode is returned as a record: nothing is lost.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ctxsparse.agent.coding_task import CodingTask
from ctxsparse.agent.environment import SandboxConfig, SandboxEnvironment
from ctxsparse.agent.records import EpisodeRecord, TurnRecord
from ctxsparse.agent.workspace import Workspace, score_patch

MINI_SWE_AGENT_INSTALL = "pip install 'ctxsparse[agent]'  (or: pip install mini-swe-agent)"
AGENT_CONFIG = "mini_textbased"


def require_mini_swe_agent() -> None:
    """Import mini-swe-agent quietly, or say how to install it."""
    os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
    os.environ.setdefault("MSWEA_COST_TRACKING", "ignore_errors")
    try:
        import minisweagent  # noqa: F401
    except ImportError as err:
        raise RuntimeError(
            f"The agent needs mini-swe-agent, which is not installed. Install it with: {MINI_SWE_AGENT_INSTALL}"
        ) from err


def agent_templates() -> dict[str, dict[str, Any]]:
    """mini-swe-agent's text-based configuration: {'agent': {...}, 'model': {...}} prompt templates."""
    require_mini_swe_agent()
    from minisweagent.config import get_config_from_spec

    config = get_config_from_spec(AGENT_CONFIG)
    model = {k: config["model"][k] for k in ("observation_template", "format_error_template")}
    agent = {k: config["agent"][k] for k in ("system_template", "instance_template")}
    return {"agent": agent, "model": model}


def _turn_commands(messages: list[dict[str, Any]], turns: list[TurnRecord]) -> None:
    """Fill each turn's command, exit status and limits from the messages mini-swe-agent kept."""
    for i, message in enumerate(messages):
        extra = message.get("extra") or {}
        info = extra.get("ctxsparse_turn")
        if not info or not 0 < info["turn"] <= len(turns):
            continue
        turn = turns[info["turn"] - 1]
        if extra.get("interrupt_type") == "FormatError":
            turn.limits_hit = ["format_error"]
            continue
        actions = extra.get("actions") or []
        turn.command = actions[0].get("command", "") if actions else ""
        after = messages[i + 1] if i + 1 < len(messages) else {}
        after_extra = after.get("extra") or {}
        if after.get("role") == "exit":
            turn.returncode = 0 if after_extra.get("exit_status") == "Submitted" else None
        else:
            turn.returncode = after_extra.get("returncode")
            turn.limits_hit = list(after_extra.get("limits_hit") or [])


def run_episode(
    task: CodingTask,
    model: Any,
    *,
    max_turns: int,
    sandbox: SandboxConfig | None = None,
    labels: dict[str, Any] | None = None,
    trajectory: str | os.PathLike | None = None,
) -> EpisodeRecord:
    """Run one episode of `model` (a mini-swe-agent Model, usually SparseHarnessModel) on `task`.

    labels: model, method, sparsity, phase, seed for the record. trajectory: where mini-swe-agent saves the
    episode's trajectory JSON (readable by `ctxsparse replay`), if anywhere.
    """
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1; got {max_turns}.")
    templates = agent_templates()
    from minisweagent.agents.default import DefaultAgent

    labels = {"model": "", "method": "", "sparsity": 1.0, "phase": "question", "seed": 0} | (labels or {})
    start = time.perf_counter()
    with Workspace.create(task.repo) as workspace:
        env = SandboxEnvironment(workspace, sandbox)
        agent = DefaultAgent(
            model,
            env,
            **templates["agent"],
            step_limit=max_turns,
            cost_limit=0.0,
            output_path=Path(trajectory) if trajectory else None,
        )
        try:
            info = agent.run(task.issue)
            exit_reason = info.get("exit_status") or "unknown"
        except Exception as err:  # a failing model call ends the episode; the record keeps why
            exit_reason = f"{type(err).__name__}: {err}"[:500]
        patch = workspace.diff()
    verdict = score_patch(task, patch, isolation=env.isolation)
    turns: list[TurnRecord] = list(getattr(model, "turns", []))
    _turn_commands(agent.messages, turns)
    return EpisodeRecord(
        task=task.name,
        model=str(labels["model"]),
        method=str(labels["method"]),
        sparsity=float(labels["sparsity"]),
        phase=str(labels["phase"]),
        seed=int(labels["seed"]),
        resolved=verdict.resolved,
        turns=len(turns),
        tokens_generated=sum(t.generated_tokens for t in turns),
        final_context_tokens=max((t.context_tokens + t.generated_tokens for t in turns), default=0),
        exit_reason=exit_reason,
        isolation=env.isolation_label,
        wall_s=time.perf_counter() - start,
        reprefills=sum(t.reprefill for t in turns),
        patch=patch,
        test_output=verdict.output[-4000:],
        turn_records=turns,
    )

"""SWE-bench episodes through mini-swe-agent's SWE-bench support, scored by the `swebench` harness; Docker needed.

Every requirement (Docker daemon, mini-swe-agent, `datasets`, `swebench`) is checked before any work, and a
missing one is refused with what to install or start.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ctxsparse.agent.episode import require_mini_swe_agent
from ctxsparse.agent.episode_store import EpisodeStore, episode_key
from ctxsparse.agent.records import EpisodeRecord

SWEBENCH_CONFIG = "swebench_backticks"


def docker_problem() -> str | None:
    """Why Docker cannot run SWE-bench containers here, or None when it can."""
    docker = os.environ.get("MSWEA_DOCKER_EXECUTABLE", "docker")
    if shutil.which(docker) is None:
        return f"the `{docker}` command is not installed"
    try:
        done = subprocess.run([docker, "info"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"`{docker} info` failed ({err})"
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        return f"the Docker daemon is not reachable ({reason[-1] if reason else 'docker info failed'})"
    return None


def check_swebench_requirements() -> None:
    """Refuse, before any work, when SWE-bench episodes cannot run here."""
    problem = docker_problem()
    if problem:
        raise RuntimeError(
            f"--env swebench needs Docker, but {problem}. Install Docker and start its daemon (SWE-bench runs every "
            "instance in its own container), or use --env local for the shipped coding tasks."
        )
    require_mini_swe_agent()
    missing = [m for m in ("datasets", "swebench") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"--env swebench needs {', '.join(missing)}: pip install {' '.join(missing)}")


def _evaluate(
    predictions: Path, dataset: str, split: str, ids: list[str], run_id: str, workdir: Path
) -> tuple[set[str], str]:
    """Run the swebench harness on the predictions: (the ids it reports resolved, the end of its log)."""
    cmd = [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", dataset, "--split", split]
    cmd += ["--predictions_path", str(predictions), "--run_id", run_id, "--max_workers", "1", "--instance_ids", *ids]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    log = (done.stdout + done.stderr)[-4000:]
    resolved: set[str] = set()
    for report in workdir.glob(f"*.{run_id}.json"):
        resolved |= set(json.loads(report.read_text()).get("resolved_ids", []))
    return resolved, log if done.returncode == 0 else f"evaluation failed (exit {done.returncode}):\n{log}"


def run_swebench(
    model_name: str,
    model_and_tokenizer: tuple[Any, Any],
    instances: list[str],
    cells: list[Any],
    db: str | os.PathLike,
    *,
    subset: str = "lite",
    split: str = "dev",
    max_turns: int = 50,
    max_new_tokens: int = 512,
    phase: str = "question",
    progress=print,
) -> dict[str, int]:
    """Episodes of the harness model on SWE-bench instances (ids), stored like local episodes (isolation 'docker')."""
    check_swebench_requirements()
    from datasets import load_dataset
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.config import get_config_from_spec
    from minisweagent.run.benchmarks.swebench import DATASET_MAPPING, get_sb_environment

    from ctxsparse.agent.harness_model import SparseHarnessModel

    dataset = DATASET_MAPPING.get(subset, subset)
    rows = {r["instance_id"]: r for r in load_dataset(dataset, split=split) if r["instance_id"] in set(instances)}
    unknown = [i for i in instances if i not in rows]
    if unknown:
        raise ValueError(f"Instances not in {dataset} ({split}): {', '.join(unknown)}.")
    config = get_config_from_spec(SWEBENCH_CONFIG)
    templates = {k: config["model"][k] for k in ("observation_template", "format_error_template")}
    model, tokenizer = model_and_tokenizer
    ran = resolved_count = 0
    with EpisodeStore.open(db) as store, tempfile.TemporaryDirectory(prefix="ctxsparse-swebench-") as tmp:
        for cell in cells:
            for iid in instances:
                key = episode_key(
                    task=iid,
                    model=model_name,
                    method=cell.method,
                    sparsity=cell.sparsity,
                    phase=phase,
                    seed=0,
                    max_turns=max_turns,
                    max_new_tokens=max_new_tokens,
                    env="swebench",
                )
                if key in store.done_keys():
                    continue
                start = time.perf_counter()
                harness = SparseHarnessModel(
                    model,
                    tokenizer,
                    model_name=model_name,
                    method=cell.method,
                    sparsity=cell.sparsity,
                    phase=phase,
                    max_new_tokens=max_new_tokens,
                    **templates,
                )
                agent_cfg = {k: v for k, v in config["agent"].items() if k in ("system_template", "instance_template")}
                env = get_sb_environment(config, rows[iid])
                agent = DefaultAgent(harness, env, **agent_cfg, step_limit=max_turns, cost_limit=0.0)
                try:
                    info = agent.run(rows[iid]["problem_statement"])
                    exit_reason, patch = info.get("exit_status") or "unknown", info.get("submission") or ""
                except Exception as err:
                    exit_reason, patch = f"{type(err).__name__}: {err}"[:500], ""
                run_id = f"ctxsparse-{int(time.time())}"
                preds = Path(tmp) / f"{run_id}.jsonl"
                pred = {"instance_id": iid, "model_name_or_path": model_name, "model_patch": patch}
                preds.write_text(json.dumps(pred) + "\n")
                if hasattr(env, "cleanup"):
                    env.cleanup()
                resolved_ids, log = _evaluate(preds, dataset, split, [iid], run_id, Path(tmp))
                resolved = iid in resolved_ids
                turns = harness.turns
                record = EpisodeRecord(
                    task=iid,
                    model=model_name,
                    method=cell.method,
                    sparsity=cell.sparsity,
                    phase=phase,
                    seed=0,
                    resolved=resolved,
                    turns=len(turns),
                    tokens_generated=sum(t.generated_tokens for t in turns),
                    final_context_tokens=max((t.context_tokens + t.generated_tokens for t in turns), default=0),
                    exit_reason=exit_reason,
                    isolation="docker",
                    wall_s=time.perf_counter() - start,
                    reprefills=sum(t.reprefill for t in turns),
                    patch=patch,
                    turn_records=turns,
                )
                store.add_episode(key, record)
                ran += 1
                resolved_count += resolved
                progress(f"{iid} {cell.method}@{cell.sparsity:g}x: {'resolved' if resolved else 'unresolved'}")
    return {"ran": ran, "resolved": resolved_count}

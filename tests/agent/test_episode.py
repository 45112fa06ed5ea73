import os

import pytest

os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
from minisweagent.models.test_models import DeterministicModel, make_output  # noqa: E402

from ctxsparse.agent.coding_task import load_tasks  # noqa: E402
from ctxsparse.agent.environment import SandboxConfig, SandboxEnvironment  # noqa: E402
from ctxsparse.agent.episode import run_episode  # noqa: E402
from ctxsparse.agent.sandbox import NAMESPACES, Limits, available_isolation  # noqa: E402
from ctxsparse.agent.workspace import Workspace  # noqa: E402

SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
FIX = "sed -i 's|return total // per_page|return -(-total // per_page)|' pagination.py"
WRONG = "sed -i 's|return total // per_page|return total // per_page + 1|' pagination.py"
SANDBOX = SandboxConfig(Limits(wall_s=2, cpu_s=5, output_bytes=2000, processes=32))


def scripted(*commands):
    return DeterministicModel(
        outputs=[make_output(f"THOUGHT: step\n\n```bash\n{c}\n```", [{"command": c}]) for c in commands]
    )


def test_scripted_fix_resolves_end_to_end():
    task = load_tasks("page_count")[0]
    record = run_episode(
        task,
        scripted("cat pagination.py", FIX, "python -m pytest -q tests", SUBMIT),
        max_turns=10,
        sandbox=SANDBOX,
        labels={"method": "scripted"},
    )
    assert record.exit_reason == "Submitted"
    assert record.resolved, record.test_output
    assert "pagination.py" in record.patch
    assert record.isolation.startswith(available_isolation() + ", processes: ")


def test_wrong_fix_is_unresolved():
    task = load_tasks("page_count")[0]
    record = run_episode(task, scripted(WRONG, SUBMIT), max_turns=10, sandbox=SANDBOX)
    assert record.exit_reason == "Submitted" and not record.resolved


def test_turn_limit_ends_the_episode():
    task = load_tasks("page_count")[0]
    record = run_episode(task, scripted("ls", "ls", "ls"), max_turns=2, sandbox=SANDBOX)
    assert record.exit_reason == "LimitsExceeded" and not record.resolved


def test_hostile_commands_are_observations_and_the_episode_goes_on(tmp_path):
    task = load_tasks("page_count")[0]
    outside = tmp_path / "outside.txt"
    hostile = [f"echo pwned > {outside}", "yes", "while true; do :; done", "head -c 5000000 /dev/zero > big"]
    record = run_episode(task, scripted(*hostile, FIX, SUBMIT), max_turns=10, sandbox=SANDBOX)
    assert record.exit_reason == "Submitted" and record.resolved
    if available_isolation() == NAMESPACES:
        assert not outside.exists()


def test_environment_protocol_and_submission():
    from minisweagent.exceptions import Submitted

    task = load_tasks("page_count")[0]
    with Workspace.create(task.repo) as ws:
        env = SandboxEnvironment(ws, SANDBOX)
        out = env.execute({"command": "yes"})
        assert set(out) >= {"output", "returncode", "exception_info"} and "output_cap" in out["extra"]["limits_hit"]
        env.execute({"command": "echo changed > new_file.txt"})
        with pytest.raises(Submitted) as done:
            env.execute({"command": SUBMIT})
        assert "new_file.txt" in done.value.messages[0]["extra"]["submission"]
        assert {"system", "release", "machine", "isolation"} <= set(env.get_template_vars())


def test_repo_size_limit_removes_new_files():
    task = load_tasks("page_count")[0]
    with Workspace.create(task.repo) as ws:
        env = SandboxEnvironment(ws, SandboxConfig(Limits(wall_s=5, file_bytes=400_000, repo_bytes=500_000)))
        out = env.execute({"command": "for i in 1 2 3 4; do head -c 300000 /dev/zero > fill$i; done; echo done"})
        assert "repo_size" in out["extra"]["limits_hit"] and "removed new files" in out["output"]
        assert sum(f.stat().st_size for f in ws.repo.rglob("*") if f.is_file()) <= 500_000
        assert (ws.repo / "pagination.py").exists()


def test_max_turns_must_be_positive():
    with pytest.raises(ValueError, match="max_turns"):
        run_episode(load_tasks("page_count")[0], scripted("ls"), max_turns=0)

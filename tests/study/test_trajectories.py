import json
import os

import pytest

from ctxsparse.cli.main import main
from ctxsparse.study.replay import load_transcript
from ctxsparse.study.trajectories import read_trajectory

os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")

SWE_AGENT_TRAJ = {
    "environment": "swe_main",
    "trajectory": [
        {"action": "ls", "observation": "main.py tests", "response": "Let me look.\nls", "thought": "Let me look."},
        {"action": "submit", "observation": "", "response": "submit", "thought": ""},
    ],
    "history": [
        {
            "role": "system",
            "content": "You are an autonomous programmer.",
            "agent": "main",
            "message_type": "system_prompt",
        },
        {
            "role": "user",
            "content": [{"type": "text", "text": "Fix the answer 42 in main.py"}],
            "agent": "main",
            "message_type": "observation",
        },
        {
            "role": "assistant",
            "content": "Let me look.",
            "agent": "main",
            "message_type": "action",
            "thought": "x",
            "action": "ls",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}
            ],
        },
        {
            "role": "tool",
            "content": [{"type": "text", "text": "main.py tests"}],
            "agent": "main",
            "tool_call_ids": ["call_1"],
            "message_type": "observation",
        },
        {"role": "assistant", "content": "submit", "agent": "main", "message_type": "action"},
    ],
    "info": {"exit_status": "submitted", "submission": "diff --git a/main.py b/main.py"},
    "replay_config": "{}",
}


@pytest.fixture
def mini_traj(tmp_path):
    """A real mini-swe-agent trajectory: DefaultAgent with its deterministic test model, saved by the agent."""
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.models.test_models import DeterministicModel, make_output

    from ctxsparse.agent.coding_task import load_tasks
    from ctxsparse.agent.environment import SandboxConfig, SandboxEnvironment
    from ctxsparse.agent.episode import agent_templates
    from ctxsparse.agent.workspace import Workspace

    path = tmp_path / "run.traj.json"
    commands = ["cat pagination.py", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"]
    model = DeterministicModel(
        outputs=[make_output(f"THOUGHT: go\n```bash\n{c}\n```", [{"command": c}]) for c in commands]
    )
    with Workspace.create(load_tasks("page_count")[0].repo) as ws:
        agent = DefaultAgent(
            model, SandboxEnvironment(ws, SandboxConfig()), **agent_templates()["agent"], output_path=path
        )
        agent.run("Fix page_count.")
    return path


def test_reads_mini_swe_agent_trajectory(mini_traj):
    traj = read_trajectory(mini_traj)
    assert traj.format == "mini-swe-agent trajectory JSON"
    assert [m["role"] for m in traj.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert all("extra" not in m for m in traj.messages)  # exit record and bookkeeping dropped
    assert "def page_count" in traj.messages[3]["content"]


def test_reads_swe_agent_traj(tmp_path):
    path = tmp_path / "issue.traj"
    path.write_text(json.dumps(SWE_AGENT_TRAJ))
    traj = read_trajectory(path)
    assert traj.format == "SWE-agent .traj"
    assert [m["role"] for m in traj.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert traj.messages[2]["tool_calls"][0]["function"]["name"] == "bash"
    assert load_transcript(path)[1]["content"][0]["text"].startswith("Fix the answer")


def test_unknown_format_lists_the_known_ones(tmp_path):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"steps": [1, 2]}))
    with pytest.raises(
        ValueError, match="Known formats: mini-swe-agent trajectory JSON.*SWE-agent .traj.*chat transcript"
    ):
        read_trajectory(path)


def test_replay_cli_on_each_public_format(tmp_path, mini_traj, capsys):
    swe = tmp_path / "issue.traj"
    swe.write_text(json.dumps(SWE_AGENT_TRAJ))
    for path in (mini_traj, swe):
        out_json = tmp_path / f"{path.stem}.json"
        argv = ["replay", str(path), "--model", "random:tiny-llama", "--sparsities", "2,4", "--json", str(out_json)]
        assert main(argv) == 0
        results = json.loads(out_json.read_text())
        assert [r["budget"] for r in results] == ["S=2", "S=4"] or len(results) == 2
        for r in results:
            assert len(r["turns"]) == 2 and r["turns"][1]["start"] > r["turns"][0]["start"]  # the context grew
            assert all(t["agreement"] is not None for t in r["turns"])
    assert "context" in capsys.readouterr().out

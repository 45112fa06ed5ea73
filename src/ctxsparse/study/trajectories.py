"""Read agent trajectories into chat messages for replay: OpenAI-style transcripts, mini-swe-agent trajectory
JSON and SWE-agent .traj files. Each reader returns role/content messages (tool calls kept) in the order the
model saw them; anything that is not a chat message (mini-swe-agent's exit record, bookkeeping) is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxsparse.user_files import read_user_text

CHAT_ROLES = ("system", "user", "assistant", "tool", "function", "developer")


@dataclass
class Trajectory:
    """Chat messages read from a file, and which format they came in."""

    format: str
    messages: list[dict[str, Any]]


def _message(m: dict[str, Any]) -> dict[str, Any]:
    out = {"role": m["role"], "content": m.get("content")}
    for key in ("tool_calls", "tool_call_id", "name"):
        if m.get(key):
            out[key] = m[key]
    return out


def _chat(messages: list[Any]) -> list[dict[str, Any]]:
    return [_message(m) for m in messages if isinstance(m, dict) and m.get("role") in CHAT_ROLES]


def _is_mini_swe_agent(data: Any) -> bool:
    return isinstance(data, dict) and str(data.get("trajectory_format", "")).startswith("mini-swe-agent")


def _is_swe_agent(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("history"), list) and "trajectory" in data


def _is_transcript(data: Any) -> bool:
    # Permissive on purpose: a list of messages is checked message by message later, with precise errors.
    messages = data.get("messages") if isinstance(data, dict) else data
    return isinstance(messages, list)


def _read_mini_swe_agent(data: dict[str, Any]) -> list[dict[str, Any]]:
    return _chat(data.get("messages", []))


def _read_swe_agent(data: dict[str, Any]) -> list[dict[str, Any]]:
    # SWE-agent keeps the model's view in `history`; some configurations tag messages per agent ('main').
    history = [m for m in data["history"] if isinstance(m, dict) and m.get("agent", "main") == "main"]
    return _chat(history)


def _read_transcript(data: Any) -> list[dict[str, Any]]:
    return list(data["messages"] if isinstance(data, dict) else data)


# Checked in this order; the first format whose test matches reads the file.
FORMATS: dict[str, tuple[Callable[[Any], bool], Callable[[Any], list[dict[str, Any]]]]] = {
    "mini-swe-agent trajectory JSON (trajectory_format 'mini-swe-agent-*', messages)": (
        _is_mini_swe_agent,
        _read_mini_swe_agent,
    ),
    "SWE-agent .traj (history and trajectory)": (_is_swe_agent, _read_swe_agent),
    "chat transcript (a JSON list of role/content messages, or {'messages': [...]})": (
        _is_transcript,
        _read_transcript,
    ),
}


def read_trajectory(path: str | Path) -> Trajectory:
    """The chat messages of a trajectory file in any known format; a ValueError names the formats otherwise."""
    known = "; ".join(FORMATS)
    try:
        data = json.loads(read_user_text(path, "transcript", f"a transcript or trajectory JSON file ({known})"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}). Replay reads: {known}.") from err
    for name, (matches, read) in FORMATS.items():
        if matches(data):
            return Trajectory(name.split(" (")[0], read(data))
    raise ValueError(f"{path} is in no format replay reads. Known formats: {known}.")

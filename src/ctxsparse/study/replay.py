"""Trajectory replay: teacher-force a real chat transcript and measure, per assistant turn, how far sparse
next-token predictions stray from dense ones (KL and top-1 agreement).

Alignment: the transcript is rendered with the tokenizer's chat template into ids[0..T). Everything before
the first assistant turn's first token (position sparse_from) is prefilled densely; positions >= sparse_from
run sparse. The logits at position p predict token p + 1, so teacher_forced's row r (position
sparse_from + r) scores token sparse_from + r + 1. An assistant turn spanning tokens [start, end) (its content
and the template's end-of-turn tokens) is scored on the predictions of its tokens that are made at sparse
positions: tokens start..end-1, predicted at positions start-1..end-2, restricted to positions >= sparse_from.
So the first turn's first token, predicted from the dense prompt, is not counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant", "tool", "function", "developer")


@dataclass
class ReplayTurn:
    """One assistant turn: its message index, token span, and sparse-vs-dense fidelity over it."""

    message: int
    start: int
    end: int
    scored: int
    kl_mean: float | None
    kl_max: float | None
    agreement: float | None


@dataclass
class ReplayResult:
    """Per-turn and overall fidelity of one replay."""

    model: str
    method: str
    budget: str
    rendering: str
    tokens: int
    sparse_from: int
    turns: list[ReplayTurn] = field(default_factory=list)
    kl_mean: float | None = None
    agreement: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_transcript(path: str | Path) -> list[dict[str, Any]]:
    """Chat messages from a transcript, a mini-swe-agent trajectory or a SWE-agent .traj file, checked."""
    from ctxsparse.study.trajectories import read_trajectory

    return check_messages(read_trajectory(path).messages)


def check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise ValueError("A transcript is a non-empty JSON list of messages like {'role': 'user', 'content': '...'}.")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ValueError(f"Message {i} needs a role among {', '.join(ROLES)}; got {m!r:.120}.")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("The transcript has no assistant turn to replay.")
    if messages[0]["role"] == "assistant":
        raise ValueError("The transcript starts with an assistant turn; replay needs a prompt before it.")
    return messages


def _text(content: Any) -> str:
    """Message content as text: strings pass through, lists of parts keep their text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            pass
    return "<tool_call>" + json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False) + "</tool_call>"


def as_text_messages(messages: Sequence[dict[str, Any]], tool_role: bool) -> list[dict[str, str]]:
    """Tool calls written into the assistant's text; with tool_role=False tool results become user turns."""
    out = []
    for m in messages:
        content = _text(m.get("content"))
        calls = m.get("tool_calls") or []
        if calls:
            content = "\n".join([content] * bool(content) + [_call_text(c) for c in calls])
        role = m["role"]
        if role in ("tool", "function") and not tool_role:
            name = m.get("name") or m.get("tool_call_id") or ""
            role, content = "user", f"[tool result{' ' + name if name else ''}]\n{content}"
        out.append({"role": role, "content": content})
    return out


def _calls_rendered(text: str, messages: Sequence[dict[str, Any]]) -> bool:
    names = [c.get("function", c).get("name", "") for m in messages for c in (m.get("tool_calls") or [])]
    return all(name in text for name in names)


def choose_rendering(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The first way the chat template renders every message (tool calls included): native, then text."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("This tokenizer has no chat template, so a transcript cannot be rendered; use a chat model.")
    candidates = [
        ("native", messages),
        ("tool calls as text", as_text_messages(messages, tool_role=True)),
        ("tool calls and results as text", as_text_messages(messages, tool_role=False)),
    ]
    errors = []
    for name, msgs in candidates:
        try:
            text = tokenizer.apply_chat_template(msgs, tokenize=False)
        except Exception as err:  # templates raise arbitrary jinja errors on messages they do not support
            errors.append(f"{name}: {err}")
            continue
        if name != "native" or _calls_rendered(text, messages):
            return name, msgs
    raise ValueError(f"The chat template could not render this transcript ({'; '.join(errors)}).")


def token_spans(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[list[int], list[tuple[int, int, int]]]:
    """(ids, spans): the rendered conversation's token ids and (message index, start, end) per assistant turn.

    Boundaries come from rendering prefixes of the conversation; each piece between boundaries is tokenized
    on its own, so every boundary falls exactly on a token edge.
    """

    def render(msgs: list[dict[str, Any]], gen: bool) -> str:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    full = render(messages, False)
    marks: list[tuple[int, int, int]] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start_text, end_text = render(messages[:i], True), render(messages[: i + 1], False)
        if not (full.startswith(start_text) and full.startswith(end_text)):
            raise ValueError(
                "The chat template renders earlier turns differently once later ones follow (it rewrites history), "
                "so assistant turns cannot be located; replay needs a template that renders incrementally."
            )
        marks.append((i, len(start_text), len(end_text)))
    edges = sorted({0, len(full), *(s for _, s, _ in marks), *(e for _, _, e in marks)})
    ids: list[int] = []
    at: dict[int, int] = {0: 0}
    for a, b in zip(edges, edges[1:], strict=False):
        ids += tokenizer(full[a:b], add_special_tokens=False)["input_ids"]
        at[b] = len(ids)
    spans = [(i, at[s], at[e]) for i, s, e in marks if at[e] > at[s]]
    return ids, spans


def scored_rows(sparse_from: int, start: int, end: int, available: int) -> list[int]:
    """teacher_forced rows that predict tokens [start, end): positions start-1..end-2, kept where sparse."""
    rows = (p - sparse_from for p in range(max(start - 1, sparse_from), end - 1))
    return [r for r in rows if 0 <= r < available]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def replay(model: Any, tokenizer: Any, messages: list[dict[str, Any]], method: str, budget: Any) -> ReplayResult:
    """Teacher-force the transcript once, sparse from the first assistant token, and score each assistant turn.

    method: a selector spec for make_selector ('oracle_topk', 'sink_window:sink=4,window=64').
    """
    import torch

    from ctxsparse.generation import teacher_forced
    from ctxsparse.models import model_key
    from ctxsparse.selectors import make_selector

    selector = make_selector(method)
    messages = check_messages(messages)
    rendering, msgs = choose_rendering(tokenizer, messages)
    ids, spans = token_spans(tokenizer, msgs)
    if not spans:
        raise ValueError("The assistant turns render to no tokens; nothing to replay.")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and len(ids) > limit:
        raise ValueError(f"The transcript renders to {len(ids)} tokens, beyond the model's limit of {limit}.")
    sparse_from = spans[0][1]
    tf = teacher_forced(model, torch.tensor([ids]), sparse_from, selector, budget)
    kl, agree = tf.kl.float().cpu().tolist(), [bool(a) for a in tf.agreement.cpu().tolist()]
    result = ReplayResult(model_key(model), method, budget.label(), rendering, len(ids), sparse_from)
    every: list[int] = []
    for message, start, end in spans:
        rows = scored_rows(sparse_from, start, end, len(kl))
        every += rows
        ks = [kl[r] for r in rows]
        result.turns.append(
            ReplayTurn(
                message, start, end, len(rows), _mean(ks), max(ks, default=None), _mean([agree[r] for r in rows])
            )
        )
    result.kl_mean = _mean([kl[r] for r in every])
    result.agreement = _mean([agree[r] for r in every])
    return result

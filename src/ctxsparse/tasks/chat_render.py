"""Render an OpenAI-format conversation with any tokenizer's chat template, folding roles it lacks.

Tried in order: the messages as given (tool outputs in 'tool' turns); tool outputs folded into user
turns (consecutive user turns merged); the system prompt folded into the first user turn as well.
A style is accepted when the template renders without error and keeps every message's text. A
tokenizer without a chat template gets a plain 'Role: text' layout.
"""

from __future__ import annotations

from typing import Any

Message = dict[str, str]
TOOL_OUTPUT_HEADER = "Tool output:\n"


def fold_tool_turns(messages: list[Message]) -> list[Message]:
    """Tool outputs become user turns; consecutive user turns are merged."""
    out: list[Message] = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "tool":
            role, content = "user", TOOL_OUTPUT_HEADER + content
        if out and role == "user" and out[-1]["role"] == "user":
            out[-1] = {"role": "user", "content": out[-1]["content"] + "\n\n" + content}
        else:
            out.append({"role": role, "content": content})
    return out


def fold_system_turn(messages: list[Message]) -> list[Message]:
    """The system prompt is prepended to the first user turn."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], list(messages[1:])
    first_user = next((i for i, m in enumerate(rest) if m["role"] == "user"), None)
    if first_user is None:
        return [{"role": "user", "content": system}, *rest]
    rest[first_user] = {"role": "user", "content": system + "\n\n" + rest[first_user]["content"]}
    return rest


def _plain(messages: list[Message]) -> str:
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(turns) + "\n\nAssistant:"


def _template(tokenizer: Any, messages: list[Message]) -> str | None:
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # templates signal unsupported roles with assorted error types
        return None
    if not isinstance(text, str) or any(m["content"].strip() not in text for m in messages):
        return None
    return text


def render_chat(tokenizer: Any, messages: list[Message]) -> tuple[str, str, str]:
    """(context, question, style): the templated conversation split where the last message's text starts.

    `context + question` is the whole prompt, ending with the assistant generation prompt; style is
    'native', 'tool_as_user', 'no_system' or 'plain'.
    """
    if messages[-1]["role"] != "user":
        raise ValueError("The conversation to render must end with a user message (the question).")
    last = messages[-1]["content"].strip()
    if not getattr(tokenizer, "chat_template", None):
        text = _plain(messages)
        cut = text.rfind(last)
        return text[:cut], text[cut:], "plain"
    folded = fold_tool_turns(messages)
    styles = {
        "native": lambda: messages,
        "tool_as_user": lambda: folded,
        "no_system": lambda: fold_system_turn(folded),
    }
    for style, build in styles.items():
        text = _template(tokenizer, build())
        if text is not None:
            cut = text.rfind(last)
            return text[:cut], text[cut:], style
    raise ValueError(
        "The tokenizer's chat template rejects this conversation even with tool and system turns folded "
        "into user turns; give the tokenizer a chat template that accepts user/assistant turns."
    )

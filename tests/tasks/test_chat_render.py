"""Chat rendering with and without a tool role, a system role, or any template."""

import pytest

from ctxsparse.tasks.chat_render import fold_system_turn, fold_tool_turns, render_chat

MESSAGES = [
    {"role": "system", "content": "Be a careful agent."},
    {"role": "user", "content": "Look at the log."},
    {"role": "assistant", "content": "<tool_call>{}</tool_call>"},
    {"role": "tool", "content": "port 41234"},
    {"role": "user", "content": "Which port?"},
]


class FakeTemplate:
    """Renders 'role: content' lines and rejects the roles it is told to."""

    chat_template = "fake"

    def __init__(self, rejected=()):
        self.rejected = set(rejected)

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        if any(m["role"] in self.rejected for m in messages):
            raise ValueError("role not supported")
        return "".join(f"<{m['role']}>{m['content']}</>" for m in messages) + "<assistant>"


def test_native(tokenizer):
    context, question, style = render_chat(tokenizer, MESSAGES)
    assert style == "native"
    assert "<|im_start|>tool\nport 41234<|im_end|>" in context
    assert question == "Which port?<|im_end|>\n<|im_start|>assistant\n"
    assert context.endswith("<|im_start|>user\n")


def test_fold_tool_then_system():
    context, question, style = render_chat(FakeTemplate({"tool"}), MESSAGES)
    assert style == "tool_as_user"
    assert context.endswith("<user>Tool output:\nport 41234\n\n")
    assert question == "Which port?</><assistant>"
    context, _, style = render_chat(FakeTemplate({"tool", "system"}), MESSAGES)
    assert style == "no_system" and context.startswith("<user>Be a careful agent.\n\nLook at the log.")


def test_silently_dropped_roles_count_as_unsupported():
    class Dropper(FakeTemplate):
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            kept = [m for m in messages if m["role"] != "tool"]
            return super().apply_chat_template(kept, tokenize, add_generation_prompt)

    assert render_chat(Dropper(), MESSAGES)[2] == "tool_as_user"


def test_plain_layout_without_template():
    class NoTemplate:
        chat_template = None

    context, question, style = render_chat(NoTemplate(), MESSAGES)
    assert style == "plain" and context.startswith("System: Be a careful agent.")
    assert question == "Which port?\n\nAssistant:"


def test_errors():
    with pytest.raises(ValueError, match="end with a user message"):
        render_chat(FakeTemplate(), MESSAGES[:-1])
    with pytest.raises(ValueError, match="chat template"):
        render_chat(FakeTemplate({"user"}), MESSAGES)


def test_folding_helpers():
    folded = fold_tool_turns(MESSAGES)
    assert [m["role"] for m in folded] == ["system", "user", "assistant", "user"]
    assert folded[-1]["content"] == "Tool output:\nport 41234\n\nWhich port?"
    assert fold_system_turn(folded)[0]["content"].startswith("Be a careful agent.\n\nLook")
    assert fold_system_turn(folded[1:]) == folded[1:]

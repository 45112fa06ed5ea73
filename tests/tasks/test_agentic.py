"""Agentic: the early detail is in the first tool output and asked for at the end, in any chat template."""

import pytest

from ctxsparse.tasks import TASKS, render_prompt


def _first_tool_output(context: str) -> str:
    start = context.index("tail -n 6")
    return context[start : context.index("<|im_end|>", context.index("<|im_start|>", start))]


@pytest.mark.parametrize("length", [512, 2048])
def test_early_detail_in_first_output_and_asked_last(tokenizer, length):
    samples = TASKS["agentic"].generate(tokenizer, length, 2, seed=4)
    for sample, kind in zip(samples, ["port", "error_code"], strict=True):
        detail = sample.answers[0]
        assert sample.meta["detail"] == kind
        assert not sample.chat and sample.answer_prefix == ""
        assert detail in _first_tool_output(sample.context)
        assert sample.context.lower().count(detail.lower()) == 1
        assert detail not in sample.question
        assert "first log" in sample.question
        assert ("port" if kind == "port" else "error code") in sample.question
        assert sample.question.endswith("<|im_start|>assistant\n")
        assert sample.meta["template"] == "native"
        assert "<|im_start|>tool\n" in sample.context
        assert render_prompt(sample, tokenizer) == (sample.context, sample.question)


def test_long_episode_has_many_tool_rounds(tokenizer):
    sample = TASKS["agentic"].generate(tokenizer, 4096, 1)[0]
    assert sample.meta["rounds"] >= 3
    assert sample.context.count("\n<tool_call>\n") == sample.meta["rounds"] + 1


def test_template_without_tool_role_folds_outputs_into_user_turns(no_tool_tokenizer):
    sample = TASKS["agentic"].generate(no_tool_tokenizer, 1024, 1)[0]
    assert sample.meta["template"] == "tool_as_user"
    assert "<|im_start|>tool" not in sample.context
    assert "Tool output:\n" in sample.context
    assert sample.answers[0] in sample.context
    assert abs(sample.meta["length_tokens"] - 1024) <= 0.05 * 1024

"""render_prompt: dense and sparse parts rebuild the templated prompt; the split sits after the context."""

from ctxsparse.tasks import QUESTION_SEPARATOR, Sample, render_prompt

SAMPLE = Sample("t", 0, "Long context here.", "What is it?", ("x",), "string_match_all", answer_prefix="It is")


def test_chat_sample_with_template(tokenizer):
    dense, sparse = render_prompt(SAMPLE, tokenizer)
    assert dense == "<|im_start|>user\nLong context here."
    assert sparse == "\n\nWhat is it?<|im_end|>\n<|im_start|>assistant\nIt is"
    assert SAMPLE.prompt_text() == SAMPLE.context + QUESTION_SEPARATOR + SAMPLE.question


def test_chat_sample_without_template():
    class Plain:
        chat_template = None

    dense, sparse = render_prompt(SAMPLE, Plain())
    assert dense == "Long context here." and sparse == "\n\nWhat is it?\nIt is"


def test_templated_sample_is_passed_through(tokenizer):
    sample = Sample("a", 0, "<ctx>", "<q>", ("x",), "string_match_all", chat=False)
    assert render_prompt(sample, tokenizer) == ("<ctx>", "<q>")
    assert sample.prompt_text() == "<ctx><q>"

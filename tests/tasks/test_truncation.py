"""--truncate: none refuses, left keeps the end, middle keeps both ends; the question is never cut."""

import pytest

from ctxsparse.tasks import get_task
from ctxsparse.tasks.length import count_tokens
from ctxsparse.tasks.truncation import fit_text

CONTEXT = " ".join(f"w{i}" for i in range(300))


def test_none_refuses_naming_the_input_and_the_fix(tokenizer):
    with pytest.raises(ValueError, match=r"row 3 of x.jsonl has \d+ tokens, more than the limit of 100.*--truncate"):
        fit_text(CONTEXT, "Q?", tokenizer, 100, "none", "row 3 of x.jsonl")


@pytest.mark.parametrize("rule", ["left", "middle"])
def test_cut_rules_fit_the_limit_and_keep_the_question(tokenizer, rule):
    context, tokens, dropped = fit_text(CONTEXT, "Which word?", tokenizer, 100, rule, "x", separator="\n\n")
    assert tokens == count_tokens(tokenizer, context + "\n\nWhich word?") <= 100
    assert dropped > 0 and tokens > 80
    assert context.rstrip().endswith("w299")
    assert context.startswith("w0") == (rule == "middle")


def test_short_texts_pass_untouched(tokenizer):
    assert fit_text("short", "Q?", tokenizer, 100, "none", "x")[0] == "short"


def test_file_rows_are_measured_and_cut(tmp_path, tokenizer):
    path = tmp_path / "long.jsonl"
    path.write_text('{"input": "' + CONTEXT + '\\nWhat is w5?", "outputs": ["x"]}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="row 1 of .*long.jsonl"):
        get_task(str(path)).generate(tokenizer, 128, 1)
    (sample,) = get_task(str(path), truncate="middle").generate(tokenizer, 128, 1)
    assert sample.question == "What is w5?"
    assert sample.meta["length_tokens"] <= 128 and sample.meta["truncated_tokens"] > 0
    with pytest.raises(ValueError, match="--truncate must be one of"):
        get_task(str(path), truncate="right")

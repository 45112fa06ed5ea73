"""Variable tracking: the chain is complete, ordered, and answers name every variable."""

import re

from ctxsparse.tasks import TASKS


def test_chain_in_order_with_the_value(tokenizer):
    for sample in TASKS["vt"].generate(tokenizer, 1024, 3):
        value = sample.meta["value"]
        assert len(sample.answers) == 5
        assert f"VAR {sample.answers[0]} = {value}." in sample.context
        positions = [sample.context.index(f"VAR {name} =") for name in sample.answers]
        assert positions == sorted(positions)
        for before, after in zip(sample.answers, sample.answers[1:], strict=False):
            assert f"VAR {after} = {before}." in sample.context
        assert value in sample.question and value in sample.answer_prefix


def test_distractor_chain_has_another_value(tokenizer):
    sample = TASKS["vt_2chains"].generate(tokenizer, 1024, 1)[0]
    assignments = re.findall(r"VAR ([A-Z]{5}) = (\d+)\.", sample.context)
    assert len(assignments) == 2
    assert {v for _, v in assignments} - {sample.meta["value"]}
    assert len(re.findall(r"VAR [A-Z]{5} = ", sample.context)) == 10
    assert TASKS["vt"].score(", ".join(sample.answers[:4]), sample) == 0.8

"""The Sample and TaskFamily contract."""

import dataclasses

import pytest

from ctxsparse.tasks import Sample, TaskFamily


def test_sample_is_frozen_with_defaults():
    sample = Sample("niah_single", 0, "ctx", "q", ("1",), "string_match_all")
    assert sample.answer_prefix == "" and sample.max_new_tokens == 32 and sample.chat and sample.meta == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.context = "other"


def test_family_scores_by_sample_metric():
    class Echo(TaskFamily):
        name = "echo"
        description = "echo"

        def generate(self, tokenizer, length, count, seed=0):
            return [Sample(self.name, i, "c", "q", ("a", "b"), "string_match_all") for i in range(count)]

    family = Echo()
    sample = family.generate(None, 10, 1)[0]
    assert family.score("A only", sample) == 0.5
    with pytest.raises(TypeError):
        TaskFamily()

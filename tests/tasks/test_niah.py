"""Needle retrieval: answers sit in the context, depths spread, distractors and prompts as documented."""

import re
import uuid

import pytest

from ctxsparse.tasks import TASKS
from ctxsparse.tasks.words import FILLER_SENTENCES

NIAH = sorted(name for name in TASKS if name.startswith("niah"))


@pytest.mark.parametrize("name", NIAH)
def test_answers_are_in_the_context_once(name, tokenizer):
    for sample in TASKS[name].generate(tokenizer, 1024, 4, seed=3):
        assert sample.metric == "string_match_all"
        for answer in sample.answers:
            assert sample.context.count(answer) == 1
            assert answer not in sample.question
        for key in sample.meta["keys"]:
            assert key in sample.question and key in sample.answer_prefix


def test_single_needle_prompt(tokenizer):
    sample = TASKS["niah_single"].generate(tokenizer, 512, 1)[0]
    key = sample.meta["keys"][0]
    assert sample.context.startswith("A special magic number is hidden within the following text.")
    assert sample.question == f"What is the special magic number for {key} mentioned in the provided text?"
    assert sample.answer_prefix == f"The special magic number for {key} mentioned in the provided text is"
    assert re.fullmatch(r"\d{7}", sample.answers[0])
    assert FILLER_SENTENCES[0] in sample.context


def test_depths_spread_evenly(tokenizer):
    samples = TASKS["niah_single"].generate(tokenizer, 1024, 5)
    assert [s.meta["depth"] for s in samples] == [0.5, 0.0, 1.0, 0.25, 0.75]
    positions = [s.context.index(s.answers[0]) / len(s.context) for s in samples]
    order = sorted(range(5), key=lambda i: samples[i].meta["depth"])
    assert [positions[i] for i in order] == sorted(positions)
    assert min(positions) < 0.2 and max(positions) > 0.9


@pytest.mark.parametrize("name", ["niah_single", "niah_multikey", "vt", "cwe", "multihop", "agentic"])
def test_growing_the_count_keeps_earlier_samples(tokenizer, name):
    few = TASKS[name].generate(tokenizer, 512, 2, seed=1)
    more = TASKS[name].generate(tokenizer, 512, 4, seed=1)
    assert more[:2] == few


def test_uuid_values_and_word_haystack(tokenizer):
    sample = TASKS["niah_single_words_uuid"].generate(tokenizer, 512, 1)[0]
    assert uuid.UUID(sample.answers[0]).version == 4
    assert "The grass is green." not in sample.context
    assert "uuid" in sample.question


def test_multikey_has_distractor_keys(tokenizer):
    sample = TASKS["niah_multikey"].generate(tokenizer, 1024, 1)[0]
    needles = re.findall(r"special magic number for ([a-z]+-[a-z]+) is: (\d+)", sample.context)
    assert len(needles) == 4 and len({key for key, _ in needles}) == 4
    assert [value for key, value in needles if key == sample.meta["keys"][0]] == list(sample.answers)


def test_dense_multikey_haystack_is_all_needles(tokenizer):
    sample = TASKS["niah_multikey_dense"].generate(tokenizer, 1024, 1)[0]
    body = sample.context.split("\n", 1)[1]
    sentences = body.split(". ")
    assert all("special magic number for" in s for s in sentences)
    assert len(sentences) > 20


def test_multivalue_and_multiquery(tokenizer):
    multi_value = TASKS["niah_multivalue"].generate(tokenizer, 1024, 1)[0]
    assert len(multi_value.answers) == 4 and len(multi_value.meta["keys"]) == 1
    assert multi_value.question.startswith("What are all the special magic numbers for")
    multi_query = TASKS["niah_multiquery"].generate(tokenizer, 1024, 1)[0]
    assert len(multi_query.answers) == 4 and len(multi_query.meta["keys"]) == 4
    assert " and " in multi_query.question
    assert multi_query.max_new_tokens >= 4 * 12

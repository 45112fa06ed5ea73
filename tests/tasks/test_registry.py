"""Every registered family: deterministic, seed-sensitive, on target length, scorable; get_task routing."""

import pytest

from ctxsparse.tasks import TASKS, Sample, get_task, score
from ctxsparse.tasks.length import count_tokens

LENGTHS = (512, 2048)


def test_registry_holds_the_families():
    expected = {
        "niah_single",
        "niah_single_noise_number",
        "niah_single_noise_uuid",
        "niah_single_words_number",
        "niah_single_words_uuid",
        "niah_multikey",
        "niah_multikey_dense",
        "niah_multivalue",
        "niah_multiquery",
        "vt",
        "vt_2chains",
        "cwe",
        "fwe",
        "multihop",
        "multihop_2",
        "multihop_3",
        "multihop_4",
        "math",
        "agentic",
    }
    assert set(TASKS) == expected
    for name, task in TASKS.items():
        assert task.name == name and task.description


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("length", LENGTHS)
def test_deterministic_and_on_length(name, length, tokenizer):
    task = get_task(name)
    first = task.generate(tokenizer, length, 3, seed=7)
    again = task.generate(tokenizer, length, 3, seed=7)
    other = task.generate(tokenizer, length, 3, seed=8)
    assert first == again
    assert [s.prompt_text() for s in first] != [s.prompt_text() for s in other]
    assert [s.index for s in first] == [0, 1, 2]
    for sample in first:
        assert isinstance(sample, Sample) and sample.task == name
        tokens = count_tokens(tokenizer, sample.prompt_text())
        assert tokens == sample.meta["length_tokens"]
        assert abs(tokens - length) <= 0.05 * length, (name, length, tokens)
        assert sample.answers and all(isinstance(a, str) and a for a in sample.answers)
        assert sample.meta["seed"] == 7
        assert task.score(" ".join(sample.answers), sample) == 1.0
        assert score("", sample) == 0.0


def test_samples_differ_within_a_call(tokenizer):
    for name, task in TASKS.items():
        samples = task.generate(tokenizer, 512, 3, seed=0)
        assert len({s.prompt_text() for s in samples}) == 3, name


def test_generation_is_fast(tokenizer):
    import time

    start = time.perf_counter()
    for task in TASKS.values():
        task.generate(tokenizer, 4096, 1, seed=0)
    per_sample = (time.perf_counter() - start) / len(TASKS)
    assert per_sample < 1.0


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="niah_single") as err:
        get_task("niah_singel")
    assert "vt" in str(err.value) and ".jsonl" in str(err.value)


def test_too_short_length_says_the_minimum(tokenizer):
    with pytest.raises(ValueError, match="length >="):
        get_task("agentic").generate(tokenizer, 40, 1)

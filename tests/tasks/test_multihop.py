"""Multi-hop: every hop's fact is in the context, distractors share the form, the answer is the last hop."""

import re

import pytest

from ctxsparse.tasks import TASKS


@pytest.mark.parametrize("hops", [2, 3, 4])
def test_chain_is_complete_and_answer_is_last_entity(tokenizer, hops):
    sample = TASKS[f"multihop_{hops}"].generate(tokenizer, 1024, 1, seed=1)[0]
    chain = sample.meta["chain"]
    obj = sample.meta["object"]
    assert len(chain) == hops and sample.answers == (chain[-1],)
    facts = [
        f"The keeper of the {obj} is {chain[0]}.",
        f"{chain[0]} was born in {chain[1]}.",
        f"{chain[1]} lies on the river {chain[2]}." if hops > 2 else None,
        f"The river {chain[2]} flows into the {chain[3]} Sea." if hops > 3 else None,
    ]
    for fact in filter(None, facts):
        assert sample.context.count(fact) == 1
    assert obj in sample.question and not any(name in sample.question for name in chain)
    assert len(re.findall(r"The keeper of the ", sample.context)) > 5
    assert len(re.findall(r" was born in ", sample.context)) > 5


def test_default_family_cycles_hops(tokenizer):
    samples = TASKS["multihop"].generate(tokenizer, 512, 6)
    assert [s.meta["hops"] for s in samples] == [2, 3, 4, 2, 3, 4]


def test_entity_names_are_unique_and_not_prefixes(tokenizer):
    sample = TASKS["multihop"].generate(tokenizer, 2048, 1)[0]
    names = set(re.findall(r"\b[A-Z][a-z]{5}\b", sample.context)) - {"Answer"}
    assert len(names) > 50
    for name in names:
        assert not any(other != name and other.startswith(name) for other in names)

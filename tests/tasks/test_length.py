"""Length fitting, token counting and the seed-derived generators."""

import pytest

from ctxsparse.tasks.length import Draft, count_tokens, fit_length, sample_rng, spread_depth


def test_count_tokens_matches_encode(tokenizer):
    text = "The quiet lantern crossed the river 12345 times."
    assert count_tokens(tokenizer, text) == len(tokenizer.encode(text, add_special_tokens=False))


@pytest.mark.parametrize("target", [100, 777, 3000])
def test_fit_length_hits_the_target(tokenizer, target):
    calls = []

    def render(n):
        calls.append(n)
        return Draft("Intro.\n" + " ".join(f"Sentence number {i} is here." for i in range(n)), "Q?", ("a",))

    draft, tokens = fit_length(render, tokenizer, target, "t")
    assert abs(tokens - target) <= max(0.02 * target, 4)
    assert tokens == count_tokens(tokenizer, draft.text())
    assert len(calls) <= 16


def test_fit_length_refuses_targets_below_the_fixed_part(tokenizer):
    with pytest.raises(ValueError, match="length >="):
        fit_length(lambda n: Draft("word " * 200, "?", ("a",)), tokenizer, 50, "t")
    with pytest.raises(ValueError, match="positive"):
        fit_length(lambda n: Draft("", "?", ("a",)), tokenizer, 0, "t")


def test_draft_text_joins_by_chat_flag():
    assert Draft("C", "Q", ("a",)).text() == "C\n\nQ"
    assert Draft("C", "Q", ("a",), chat=False).text() == "CQ"


def test_sample_rng_is_private_and_stable():
    assert sample_rng("t", 0, 512, 3).random() == sample_rng("t", 0, 512, 3).random()
    assert sample_rng("t", 0, 512, 3).random() != sample_rng("t", 1, 512, 3).random()


def test_spread_depth_fills_the_gaps_left_by_earlier_samples():
    assert [spread_depth(i) for i in range(9)] == [0.5, 0.0, 1.0, 0.25, 0.75, 0.125, 0.375, 0.625, 0.875]
    assert len({spread_depth(i) for i in range(33)}) == 33
    with pytest.raises(ValueError, match="index"):
        spread_depth(-1)

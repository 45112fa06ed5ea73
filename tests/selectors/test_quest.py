"""Quest: page bounds are upper bounds, whole pages are read in bound order, state is incremental."""

from __future__ import annotations

import pytest
import torch
from indexer_cases import decode_steps, fresh, make_ctx, same_selection

from ctxsparse.selectors import Quest, SelectionContext, make_selector


def raw_logits(ctx: SelectionContext) -> torch.Tensor:
    keys = ctx.keys.float().repeat_interleave(ctx.group_size, dim=1)
    return ctx.query.float() @ keys.transpose(-1, -2) * ctx.scale


@pytest.mark.parametrize("page_size", [1, 4, 7, 16])
def test_page_bound_is_an_upper_bound_of_every_score_in_the_page(page_size):
    ctx, _ = make_ctx(n=53, tq=3, seed=page_size)
    logits = raw_logits(ctx)[..., : ctx.cache_len]
    page_of = torch.arange(ctx.cache_len) // page_size
    bound = Quest(page_size=page_size).page_scores(ctx)
    assert bound.shape[-1] == -(-ctx.cache_len // page_size)
    assert (bound[..., page_of] >= logits - 1e-5).all()
    # The bound is attained by a key made of the page's extremes; it is tight for single-token pages.
    if page_size == 1:
        torch.testing.assert_close(bound, logits)
    group = Quest(page_size=page_size, granularity="kv_head").page_scores(ctx)
    per_group = logits.view(2, 2, 2, 3, -1).amax(2)
    assert (group[..., page_of] >= per_group - 1e-5).all()
    summed = Quest(page_size=page_size, granularity="kv_head", aggregate="sum").page_scores(ctx)
    torch.testing.assert_close(summed, bound.view(2, 2, 2, 3, -1).sum(2))


def test_whole_pages_are_read_in_bound_order_and_the_last_one_is_cut():
    ctx, _ = make_ctx(b=1, tq=1, n=64, extra=0, seed=3)
    quest = Quest(page_size=8)
    bound = quest.page_scores(ctx)
    sel = quest.select(ctx, torch.tensor([[[20]]]))
    assert (sel.counts() == 20).all()
    for h in range(4):
        order = bound[0, h, 0].argsort(descending=True)
        expected = set()
        for page in order[:2].tolist():
            expected |= set(range(page * 8, page * 8 + 8))
        third = int(order[2])
        expected |= set(range(third * 8, third * 8 + 4))
        assert set(sel.indices[0, h, 0, :20].tolist()) == expected


def test_invisible_positions_in_a_selected_page_do_not_count():
    ctx, _ = make_ctx(b=2, tq=1, n=30, extra=0, seed=4)  # row 1 has 3 padded slots in page 0
    ctx.keys[1, :, 4] = 40.0  # page 0 ranks first
    ctx.query[1] = 1.0
    quest = Quest(page_size=8)
    assert (quest.page_scores(ctx)[1, :, 0].argmax(-1) == 0).all()
    sel = quest.select(ctx, torch.tensor([[[8]], [[8]]]))
    mask = sel.as_mask(30)
    assert not mask[1, :, :, :3].any()
    assert mask[1, :, :, 3:8].all(), "the visible part of the best page is read"
    assert (sel.counts() == 8).all()


def test_page_larger_than_the_cache_is_one_page():
    ctx, _ = make_ctx(b=1, tq=1, n=20, extra=4)
    sel = Quest(page_size=64).select(ctx, torch.tensor([[[5]]]))
    assert sel.indices[0, :, 0, :5].sort().values.tolist() == [[0, 1, 2, 3, 4]] * 4


@pytest.mark.parametrize("static", [False, True])
def test_incremental_bounds_equal_a_rebuild(static):
    quest = Quest(page_size=5)
    contexts, selections = decode_steps(quest, prefill=23, steps=9, static=static)
    last = contexts[-1]
    kept = last.state(quest)
    assert kept["indexed"] == last.cache_len == 32
    rebuilt = fresh(last)
    again = quest.select(rebuilt, torch.full((2, 1, 1), 9))
    torch.testing.assert_close(kept["min"], rebuilt.state(quest)["min"], rtol=0, atol=0)
    torch.testing.assert_close(kept["max"], rebuilt.state(quest)["max"], rtol=0, atol=0)
    assert same_selection(selections[-1], again)


def test_state_is_rebuilt_when_the_cache_is_replaced():
    quest = Quest(page_size=4)
    ctx, _ = make_ctx(n=40)
    quest.select(ctx, torch.full((2, 1, 2), 8))
    other, _ = make_ctx(n=44, seed=9)
    other.states = ctx.states
    quest.select(other, torch.full((2, 1, 2), 8))
    torch.testing.assert_close(other.state(quest)["max"], Quest(page_size=4).page_bounds(fresh(other))[1])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "16", None])
def test_page_size_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="page_size"):
        Quest(page_size=bad)


def test_bad_aggregate_and_granularity():
    with pytest.raises(ValueError, match="aggregate"):
        Quest(aggregate="mean")
    with pytest.raises(ValueError, match="granularity"):
        Quest(granularity="head")
    with pytest.raises(ValueError, match="page_size"):
        make_selector("quest:page_size=0")
    assert make_selector("quest:page_size=16").page_size == 16

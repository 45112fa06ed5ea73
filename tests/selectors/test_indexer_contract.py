"""The selector contract for every indexer: exact at full budget, budgets kept, invisible and excluded never read."""

from __future__ import annotations

import pytest
import torch
from indexer_cases import assert_exact_at_full_budget, make_ctx, random_calibration

from ctxsparse.selectors import Compose, DoubleSparsity, LSHSampling, Quest, SinkWindow, VAttention, make_selector


def build(name: str, granularity: str):
    if name == "quest":
        return Quest(page_size=8, granularity=granularity)
    if name == "quest_sum":
        return Quest(page_size=5, granularity=granularity, aggregate="sum")
    if name == "double_sparsity":
        return DoubleSparsity(channels=4, calibration=random_calibration(), granularity=granularity)
    if name == "double_sparsity_int4":
        return DoubleSparsity(channels=6, label_bits=4, calibration=random_calibration(), granularity=granularity)
    if name == "vattention":
        return VAttention(sink=2, window=4, min_samples=3, granularity=granularity)
    if name == "vattention_ds":
        top = DoubleSparsity(channels=4, calibration=random_calibration())
        return VAttention(sink=2, window=4, top=top, granularity=granularity)
    return LSHSampling(bits=4, tables=6, granularity=granularity)


NAMES = ["quest", "quest_sum", "double_sparsity", "double_sparsity_int4", "vattention", "vattention_ds", "lsh"]
GRANULARITIES = ["q_head", "kv_head"]


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("name", NAMES)
def test_exact_at_full_budget(name, granularity):
    ctx, values = make_ctx()
    assert_exact_at_full_budget(build(name, granularity), ctx, values)


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("name", NAMES)
def test_partial_budget_reads_only_visible_and_at_most_k(name, granularity):
    ctx, _ = make_ctx(n=64, tq=3)
    k = torch.full((2, 1, 3), 12, dtype=torch.int64)
    sel = build(name, granularity).select(ctx, k)
    assert sel.heads == ctx.heads_for(granularity)
    mask = sel.as_mask(ctx.num_keys)
    assert not (mask & ~ctx.visible).any()
    assert (sel.counts() <= 12).all()
    assert torch.equal(mask.sum(-1), sel.counts()), "a position was selected twice"
    if not name.startswith("lsh"):  # LSH reads only colliding keys, possibly fewer than k
        assert (sel.counts() == 12).all()


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("name", NAMES)
def test_composed_after_sink_window_never_repeats_a_token(name, granularity):
    ctx, _ = make_ctx(n=64)
    k = torch.full((2, 1, 2), 20, dtype=torch.int64)
    sel = Compose(SinkWindow(sink=2, window=6), build(name, "q_head"), granularity=granularity).select(ctx, k)
    assert sel.heads == ctx.heads_for(granularity)
    mask = sel.as_mask(ctx.num_keys)
    assert torch.equal(mask.sum(-1), sel.counts())
    assert (sel.counts() <= 20).all()
    assert not (mask & ~ctx.visible).any()


@pytest.mark.parametrize("name", ["quest", "double_sparsity_int4", "vattention", "lsh"])
def test_low_precision_keys_are_exact_at_full_budget(name):
    ctx, values = make_ctx()
    ctx.keys, ctx.query = ctx.keys.to(torch.bfloat16).float(), ctx.query.to(torch.bfloat16).float()
    ctx.keys = ctx.keys.to(torch.bfloat16)
    sel = build(name, "kv_head").select(ctx, ctx.visible_counts())
    assert torch.equal(sel.as_mask(ctx.num_keys).sum(-1), ctx.visible_counts().expand(-1, 2, -1))


@pytest.mark.parametrize(
    ("spec", "cls"),
    [("quest:page_size=16", Quest), ("vattention:epsilon=0.05,delta=0.05", VAttention), ("lsh:bits=6", LSHSampling)],
)
def test_registered_by_name(spec, cls):
    assert isinstance(make_selector(spec), cls)
    assert isinstance(make_selector("double_sparsity:channels=8,label_bits=8"), DoubleSparsity)

"""Dense, oracle top-k/top-p, sink+window, random and Compose: exactness, padding, mass, composition."""

import pytest
import torch

from ctxsparse import Budget, Compose, Dense, OracleTopK, OracleTopP, RandomTokens, SinkWindow, make_selector
from ctxsparse.attention import dense_attention_reference, sparse_attention_reference
from ctxsparse.fidelity import mass_recall

FULL = [
    Dense(),
    OracleTopK(),
    OracleTopK(aggregate="logit_max"),
    OracleTopP(p=1.0),
    SinkWindow(sink=4, window=None),
    RandomTokens(seed=3),
]


def budgets(ctx, budget):
    return budget.tokens_for_tensor(ctx.visible_counts())


@pytest.mark.parametrize("granularity", ["q_head", "kv_head"])
@pytest.mark.parametrize("selector", FULL + ["compose"], ids=lambda s: s if isinstance(s, str) else repr(s))
def test_full_budget_reproduces_dense(attention_case, selector, granularity):
    ctx, v = attention_case(seed=1)
    if selector == "compose":
        selector = Compose(SinkWindow(2, 3), OracleTopK(), granularity=granularity)
    else:
        selector = type(selector)(**{**selector.__dict__, "granularity": granularity})
    sel = selector.select(ctx, budgets(ctx, Budget(sparsity=1)))
    assert sel.heads == ctx.heads_for(granularity)
    out = sparse_attention_reference(ctx.query, ctx.keys, v, sel, ctx.scale)
    ref = dense_attention_reference(ctx.query, ctx.keys, v, ctx.visible, ctx.scale)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("selector", FULL[1:] + [Compose(SinkWindow(4, 8), OracleTopK())], ids=repr)
@pytest.mark.parametrize("sparsity", [3, 10])
def test_padding_and_future_never_selected(attention_case, selector, sparsity):
    ctx, _ = attention_case(pad=9, seed=2)
    sel = selector.select(ctx, budgets(ctx, Budget(sparsity=sparsity)))
    mask = sel.as_mask(ctx.num_keys)
    assert not (mask & ~ctx.visible_for(selector.granularity)).any()
    assert (sel.counts() <= budgets(ctx, Budget(sparsity=sparsity))).all()


def test_oracle_topk_picks_the_largest_logits(attention_case):
    ctx, _ = attention_case(pad=0)
    k = budgets(ctx, Budget(tokens=5))
    sel = OracleTopK().select(ctx, k)
    scores = ctx.scores()
    picked = torch.gather(scores, -1, sel.indices.long())
    threshold = picked.min(-1).values
    outside = scores.masked_fill(sel.as_mask(ctx.num_keys), float("-inf")).max(-1).values
    assert (outside <= threshold).all()


def test_kv_head_selection_is_shared_by_the_group(attention_case):
    ctx, _ = attention_case()
    sel = OracleTopK(granularity="kv_head").select(ctx, budgets(ctx, Budget(sparsity=4)))
    assert sel.heads == ctx.num_kv_heads
    expanded = sel.to_query_heads(ctx.num_query_heads)
    assert torch.equal(expanded.indices[:, 0], expanded.indices[:, 1])


@pytest.mark.parametrize("p", [0.5, 0.8, 0.95])
def test_topp_holds_mass_p_with_fewest_tokens(attention_case, p):
    ctx, _ = attention_case(pad=0, n=60, seed=5)
    sel = OracleTopP(p=p).select(ctx, budgets(ctx, Budget(sparsity=1)))
    recall = mass_recall(sel, ctx.probs())
    assert (recall >= p - 1e-5).all()
    # One token fewer (the least probable selected) would drop below p.
    probs = ctx.probs()
    picked = torch.gather(probs, -1, sel.indices.long()).masked_fill(~sel.valid_mask(), 2.0)
    smallest = picked.min(-1).values
    assert (recall - smallest < p + 1e-6).all()


def test_topp_capped_by_budget(attention_case):
    ctx, _ = attention_case(pad=0, n=60)
    k = budgets(ctx, Budget(tokens=3))
    sel = OracleTopP(p=0.999).select(ctx, k)
    assert (sel.counts() <= 3).all()


def test_sink_window_pattern(attention_case):
    ctx, _ = attention_case(b=1, tq=1, n=50, pad=0)
    sel = SinkWindow(sink=2, window=3).select(ctx, budgets(ctx, Budget(tokens=100)))
    assert sorted(sel.indices[0, 0, 0, : sel.lengths[0, 0, 0]].tolist()) == [0, 1, 47, 48, 49]
    capped = SinkWindow(sink=2, window=3).select(ctx, budgets(ctx, Budget(tokens=3)))
    assert sorted(capped.indices[0, 0, 0, :3].tolist()) == [0, 1, 49]


def test_compose_shares_budget_without_double_counting(attention_case):
    ctx, _ = attention_case(pad=0, n=64, tq=1)
    k = budgets(ctx, Budget(tokens=16))
    sel = Compose(SinkWindow(4, 4), OracleTopK()).select(ctx, k)
    assert (sel.counts() == 16).all()
    for row in sel.indices.view(-1, sel.k):
        assert len(set(row.tolist())) == 16
    # The oracle fills exactly what the pattern left: it overlaps the pattern nowhere.
    pattern = SinkWindow(4, 4).select(ctx, k).as_mask(ctx.num_keys)
    assert (sel.as_mask(ctx.num_keys) & pattern).sum(-1).eq(8).all()


def test_random_is_reproducible(attention_case):
    ctx, _ = attention_case()
    k = budgets(ctx, Budget(sparsity=4))
    a = RandomTokens(seed=1).select(ctx, k).as_mask(ctx.num_keys)
    ctx2, _ = attention_case()
    b = RandomTokens(seed=1).select(ctx2, k).as_mask(ctx.num_keys)
    c = RandomTokens(seed=2).select(ctx2, k).as_mask(ctx.num_keys)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_registry_names_and_errors(attention_case):
    assert isinstance(make_selector("oracle_topp:p=0.7"), OracleTopP)
    composed = make_selector("sink_window:sink=4,window=64+oracle_topk")
    assert isinstance(composed, Compose) and isinstance(composed.members[1], OracleTopK)
    with pytest.raises(ValueError, match="Known selectors: .*oracle_topk"):
        make_selector("oracle_topq")
    with pytest.raises(ValueError, match="name=value"):
        make_selector("sink_window:4")
    with pytest.raises(ValueError, match="granularity"):
        ctx, _ = attention_case()
        OracleTopK(granularity="group").select(ctx, ctx.visible_counts())
    with pytest.raises(ValueError, match="p must lie"):
        OracleTopP(p=0)

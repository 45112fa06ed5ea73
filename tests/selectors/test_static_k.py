"""static_k: selectors that honour it pick the same tokens with fixed-size outputs and no budget read-back."""

import pytest
import torch

from ctxsparse import Budget
from ctxsparse.engine.batch_select import graph_ready
from ctxsparse.selectors import make_selector
from ctxsparse.selectors.base import SelectionContext


def _ctx(static_k=None, n=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    b, hq, hkv, d = 3, 4, 2, 16
    lengths = torch.tensor([96, 70, 41])
    visible = (torch.arange(n).view(1, -1) < lengths.view(-1, 1)).view(b, 1, 1, n)
    return SelectionContext(
        query=torch.randn(b, hq, 1, d, generator=gen),
        keys=torch.randn(b, hkv, n, d, generator=gen),
        visible=visible,
        scale=d**-0.5,
        static_k=static_k,
    )


def _picked(sel, n):
    """Per row the set of (head, position, weight) picked."""
    mask = sel.valid_mask()
    weights = sel.weights if sel.weights is not None else torch.ones(sel.indices.shape)
    out = []
    for b in range(sel.indices.shape[0]):
        rows = set()
        for h in range(sel.indices.shape[1]):
            idx, w, m = sel.indices[b, h, 0], weights[b, h, 0], mask[b, h, 0]
            rows |= {(h, int(i), round(float(x), 4)) for i, x, v in zip(idx, w, m, strict=True) if v}
        out.append(rows)
    return out


@pytest.mark.parametrize("spec", ["oracle_topk", "oracle_topk:granularity=kv_head", "sink_window:sink=4,window=8"])
def test_static_k_picks_the_same_tokens(spec):
    selector = make_selector(spec)
    budget = Budget(sparsity=8)
    plain = _ctx()
    k = budget.tokens_for_tensor(plain.visible_counts())
    want = selector.select(plain, k)
    static = _ctx(static_k=budget.tokens_for(96))
    got = selector.select(static, budget.tokens_for_tensor(static.visible_counts()))
    assert got.k == budget.tokens_for(96)  # sized to the bound, not to the largest budget read back
    assert _picked(got, 96) == _picked(want, 96)


def test_vattention_static_k_keeps_its_exact_part_and_sample_sizes():
    """The sampled tokens come from another generator under static_k; what is read exactly, how many tokens
    each row reads and the sample weights do not change."""
    selector = make_selector("vattention:sink=2,window=4,min_samples=2")
    budget = Budget(sparsity=4)
    plain = _ctx()
    want = selector.select(plain, budget.tokens_for_tensor(plain.visible_counts()))
    static = _ctx(static_k=budget.tokens_for(96))
    got = selector.select(static, budget.tokens_for_tensor(static.visible_counts()))
    assert got.k == budget.tokens_for(96)
    assert torch.equal(got.counts(), want.counts())
    for g, w in zip(_picked(got, 96), _picked(want, 96), strict=True):
        assert {t for t in g if t[2] == 1.0} == {t for t in w if t[2] == 1.0}
        assert sorted(t[2] for t in g if t[2] != 1.0) == sorted(t[2] for t in w if t[2] != 1.0)


def test_graph_ready_follows_the_parts():
    assert graph_ready(make_selector("vattention")) and graph_ready(make_selector("sink_window"))
    assert not graph_ready(make_selector("vattention:top=lsh"))
    assert not graph_ready(make_selector("quest")) and not graph_ready(make_selector("oracle_topp"))

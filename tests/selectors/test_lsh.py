"""LSH sampling: seeded SimHash tables, collision-ranked candidates, inverse-probability weights."""

from __future__ import annotations

import math

import pytest
import torch
from indexer_cases import decode_steps, fresh, make_ctx, same_selection

from ctxsparse.selectors import LSHSampling, SelectionContext, make_selector
from ctxsparse.selectors.lsh import collision_probability


def test_same_seed_same_selection_other_seed_other_selection():
    ctx, _ = make_ctx(n=120, tq=2)
    k = torch.full((2, 1, 2), 20)
    first = LSHSampling(bits=4, tables=4, seed=7).select(ctx, k)
    again = LSHSampling(bits=4, tables=4, seed=7).select(make_ctx(n=120, tq=2)[0], k)
    other = LSHSampling(bits=4, tables=4, seed=8).select(make_ctx(n=120, tq=2)[0], k)
    assert same_selection(first, again)
    assert not torch.equal(first.as_mask(ctx.num_keys), other.as_mask(ctx.num_keys))


def test_signatures_depend_only_on_direction():
    lsh = LSHSampling(bits=6, tables=3)
    planes = lsh.hyperplanes(0, 16, "cpu")
    x = torch.randn(50, 16)
    codes = lsh.signatures(x, planes)
    assert codes.shape == (50, 3) and codes.min() >= 0 and codes.max() < 64
    assert torch.equal(codes, lsh.signatures(3.5 * x, planes))
    assert torch.equal(lsh.signatures(-x, planes), 63 - codes)


def test_collision_probability_matches_the_hyperplane_draw():
    assert float(collision_probability(torch.tensor(1.0), 8, 16)) == pytest.approx(1.0)
    assert float(collision_probability(torch.tensor(-1.0), 8, 16)) == pytest.approx(0.0)
    cos = torch.linspace(-1, 1, 21)
    assert (collision_probability(cos, 4, 3).diff() >= 0).all()
    # Empirical: fraction of seeds under which two vectors at 60 degrees collide in >= 1 table.
    a, b = torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([0.5, math.sqrt(3) / 2, 0.0, 0.0])
    draws = 2000
    hits = 0
    for seed in range(draws):
        lsh = LSHSampling(bits=3, tables=2, seed=seed)
        planes = lsh.hyperplanes(0, 4, "cpu")
        hits += bool((lsh.signatures(a, planes) == lsh.signatures(b, planes)).any())
    p = 1 - (1 - (2 / 3) ** 3) ** 2
    assert abs(hits / draws - p) <= math.sqrt(math.log(2e6) / (2 * draws))


def test_candidates_are_colliding_keys_ranked_by_collisions_with_inverse_probability_weights():
    ctx, _ = make_ctx(n=150, tq=1, b=1, extra=0, seed=2)
    lsh = LSHSampling(bits=3, tables=5)
    counts = lsh.collisions(ctx)[0, :, 0]
    k = 25
    sel = lsh.select(ctx, torch.tensor([[[k]]]))
    for h in range(4):
        picked = sel.indices[0, h, 0, : sel.lengths[0, h, 0]].long()
        assert (counts[h, picked] > 0).all()
        assert len(picked) == min(k, int((counts[h] > 0).sum()))
        rest = torch.ones(150, dtype=torch.bool)
        rest[picked] = False
        assert counts[h, picked].min() >= counts[h, rest].max()
        keys = ctx.keys[0, h // 2, picked]
        cos = torch.nn.functional.cosine_similarity(keys, ctx.query[0, h, 0].expand_as(keys), dim=-1)
        w = sel.weights[0, h, 0, : len(picked)]
        torch.testing.assert_close(w, 1 / collision_probability(cos, 3, 5))


def test_weighted_denominator_is_unbiased_over_the_hyperplane_draw():
    gen = torch.Generator().manual_seed(4)
    d, n = 8, 40
    query = torch.randn(1, 1, 1, d, generator=gen)
    keys = query[:, :, 0:1] + 0.9 * torch.randn(1, 1, n, d, generator=gen) * query.norm()
    ctx = SelectionContext(query, keys, torch.ones(1, 1, 1, n, dtype=torch.bool), scale=d**-0.5)
    exact = torch.exp(ctx.scores()[0, 0, 0])
    k = torch.tensor([[[n - 1]]])  # below the full budget: only colliding keys are read
    draws = 300
    cos = torch.cosine_similarity(keys[0, 0], query[0, 0], -1)
    bound = float((exact / collision_probability(cos, 4, 2)).sum())  # a draw's estimate lies in [0, bound]
    weighted = unweighted = 0.0
    for seed in range(draws):
        sel = LSHSampling(bits=4, tables=2, seed=seed).select(SelectionContext(query, keys, ctx.visible, ctx.scale), k)
        idx = sel.indices[0, 0, 0, : sel.lengths[0, 0, 0]].long()
        w = sel.weights[0, 0, 0, : len(idx)]
        weighted += float((exact[idx] * w).sum()) / draws
        unweighted += float(exact[idx].sum()) / draws
    tol = bound * math.sqrt(math.log(2e6) / (2 * draws))
    assert abs(weighted - float(exact.sum())) <= tol
    assert float(exact.sum()) - unweighted > tol, "without weights the estimate is biased"


@pytest.mark.parametrize("static", [False, True])
def test_incremental_signatures_equal_a_rebuild(static):
    lsh = LSHSampling(bits=5, tables=4)
    contexts, selections = decode_steps(lsh, prefill=33, steps=6, static=static)
    last = contexts[-1]
    rebuilt = fresh(last)
    again = lsh.select(rebuilt, torch.full((2, 1, 1), 9))
    assert last.state(lsh)["codes"].shape[2] == last.cache_len == 39
    assert torch.equal(last.state(lsh)["codes"], rebuilt.state(lsh)["codes"])
    assert same_selection(selections[-1], again)


@pytest.mark.parametrize("bad", [{"bits": 0}, {"bits": 31}, {"tables": 0}, {"bits": True}, {"tables": 2.5}])
def test_bad_parameters_error(bad):
    with pytest.raises(ValueError, match="LSHSampling"):
        LSHSampling(**bad)
    assert make_selector("lsh:bits=6,tables=4,seed=2") == LSHSampling(bits=6, tables=4, seed=2)

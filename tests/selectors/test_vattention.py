"""vAttention: unbiased residual estimate, sample size from the (epsilon, delta) bound, budget kept."""

from __future__ import annotations

import math

import pytest
import torch
from indexer_cases import make_ctx, random_calibration

from ctxsparse.selectors import DoubleSparsity, OracleTopK, VAttention, make_selector
from ctxsparse.selectors.vattention import required_samples


def flat_ctx(n: int = 300, sharp: float = 1.0):
    ctx, values = make_ctx(b=1, hq=2, hkv=1, tq=1, n=n, extra=0, seed=11)
    ctx.query = ctx.query * sharp
    return ctx, values


def weighted_sums(sel, ctx, values) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query head: the weighted denominator sum_j w_j exp(s_j) and numerator sum_j w_j exp(s_j) v_j."""
    idx = sel.indices[0, :, 0].long()
    w = sel.weights[0, :, 0] * sel.valid_mask()[0, :, 0]
    terms = torch.exp(ctx.scores()[0, :, 0].gather(-1, idx)) * w  # [H, k]
    return terms.sum(-1), (terms.unsqueeze(-1) * values[0, 0][idx]).sum(1)


def test_weighted_sums_are_unbiased_within_the_hoeffding_tolerance():
    ctx, values = flat_ctx()
    k = torch.tensor([[[60]]])
    va = VAttention(epsilon=0.01, sink=2, window=8)
    exact = torch.exp(ctx.scores()[0, :, 0])  # [H, N]
    draws = 800
    den, num, unweighted = torch.zeros(2), torch.zeros(2, 16), torch.zeros(2)
    for _ in range(draws):
        sel = va.select(ctx, k)
        d, n = weighted_sums(sel, ctx, values)
        den, num = den + d / draws, num + n / draws
        unweighted += (sel.as_mask(ctx.num_keys)[0, :, 0] * exact).sum(-1) / draws
    # The deterministic tokens (weight 1) are the same in every draw; the residual's estimate lies in
    # [0, M X] per draw, so Hoeffding over the draws bounds the mean's error (failure odds 1e-6).
    w = sel.weights[0, :, 0]
    assert (sel.counts() == 60).all() and (w > 1).any(-1).all(), "the case must actually sample"
    det = torch.zeros_like(exact, dtype=torch.bool).scatter(-1, sel.indices[0, :, 0].long(), w == 1)
    residual = ~det
    tol = residual.sum(-1) * torch.where(residual, exact, 0).amax(-1) * math.sqrt(math.log(2e6) / (2 * draws))
    assert ((den - exact.sum(-1)).abs() <= tol).all()
    vmax = values[0, 0].abs().max()  # a numerator channel's estimate spans [-M X vmax, M X vmax]
    assert ((num - exact @ values[0, 0]).abs() <= tol.unsqueeze(-1) * 2 * vmax).all()
    assert ((unweighted - exact.sum(-1)).abs() > 2 * tol).all(), "without weights the estimate is biased"


def test_weights_add_up_to_the_number_of_allowed_tokens():
    ctx, _ = make_ctx(n=200, tq=2)
    for granularity in ("q_head", "kv_head"):
        sel = VAttention(epsilon=0.02, granularity=granularity).select(ctx, torch.full((2, 1, 2), 90))
        total = (sel.weights * sel.valid_mask()).sum(-1)
        assert (sel.counts() == 90).all()
        torch.testing.assert_close(total, ctx.visible_counts().float().expand_as(total))


def count_samples(sel) -> torch.Tensor:
    return ((sel.weights > 1) & sel.valid_mask()).sum(-1)


def test_the_bound_sets_the_sample_size():
    assert required_samples(1.0, 0.05, 0.05) == math.ceil(math.log(40) / (2 * 0.0025))
    ctx, _ = flat_ctx(n=2000)
    k = torch.tensor([[[600]]])
    loose = count_samples(VAttention(epsilon=0.5, min_samples=1).select(ctx, k))
    tight = count_samples(VAttention(epsilon=0.2, min_samples=1).select(ctx, k))
    tiny = count_samples(VAttention(epsilon=1e-4, min_samples=1).select(ctx, k))
    assert (loose < tight).all() and (tight <= tiny).all()
    assert (loose >= 1).all() and (tight < 600 - 68).all()


def test_the_chosen_split_meets_the_bound_when_the_budget_allows():
    ctx, _ = flat_ctx(n=2000, sharp=1.5)
    eps, delta = 0.2, 0.05
    sel = VAttention(epsilon=eps, delta=delta, min_samples=1).select(ctx, torch.tensor([[[600]]]))
    logits = ctx.scores()[0, :, 0]
    for h in range(2):
        w = sel.weights[0, h, 0]
        idx = sel.indices[0, h, 0].long()
        det = idx[w == 1]
        n = int((w > 1).sum())
        m = round(float(w[w > 1][0]) * n)
        top = torch.exp(logits[h, det] - logits[h, det].max())
        rho = m * float(top.min()) / float(top.sum())
        assert rho * math.sqrt(math.log(2 / delta) / (2 * n)) <= eps


def test_budget_is_used_even_when_the_bound_asks_for_more():
    ctx, _ = flat_ctx(n=400)
    sel = VAttention(epsilon=1e-3, delta=1e-3, sink=2, window=8).select(ctx, torch.tensor([[[50]]]))
    assert (sel.counts() == 50).all() and (count_samples(sel) > 0).all()


def test_draws_are_reproducible_per_seed_and_differ_between_steps():
    ctx, _ = flat_ctx()
    k = torch.tensor([[[60]]])
    first = VAttention(sink=2, window=8, seed=3).select(ctx, k)
    again = VAttention(sink=2, window=8, seed=3).select(flat_ctx()[0], k)
    assert torch.equal(first.indices, again.indices)
    assert not torch.equal(VAttention(sink=2, window=8, seed=4).select(flat_ctx()[0], k).indices, first.indices)
    va = VAttention(sink=2, window=8, seed=3)
    va.select(ctx, k)
    assert not torch.equal(va.select(ctx, k).indices, first.indices)


def test_top_may_be_any_selector_at_the_same_granularity():
    va = VAttention(top=DoubleSparsity(channels=4, calibration=random_calibration()), granularity="kv_head")
    assert va.top.granularity == "kv_head"
    assert isinstance(VAttention(top="oracle_topk").top, OracleTopK)
    assert isinstance(make_selector("vattention:epsilon=0.1,delta=0.2,top='oracle_topk'").top, OracleTopK)


@pytest.mark.parametrize("bad", [0, 1, -0.5, 1.5, float("nan"), True, "0.1"])
def test_epsilon_and_delta_must_lie_in_the_open_unit_interval(bad):
    with pytest.raises(ValueError, match="epsilon"):
        VAttention(epsilon=bad)
    with pytest.raises(ValueError, match="delta"):
        VAttention(delta=bad)


def test_other_bad_parameters():
    with pytest.raises(ValueError, match="sink"):
        VAttention(sink=-1)
    with pytest.raises(ValueError, match="min_samples"):
        VAttention(min_samples=0)
    with pytest.raises(TypeError, match="top"):
        VAttention(top=5)
    with pytest.raises(ValueError, match="Unknown selector"):
        VAttention(top="nope")

"""Quest page scoring against torch and against the CPU Quest selector's page bounds."""

from __future__ import annotations

import pytest
import torch
from triton_cases import DEVICE, FULL, coarse_bins, gen, load, rel_err

page_score = load("page_score")

from ctxsparse.selectors import Quest, SelectionContext  # noqa: E402

# (batch, query heads, kv heads, tokens, head_dim)
SHAPE = (8, 32, 8, 32768, 128) if FULL else (2, 8, 2, 200, 64)


def reference(q, page_min, page_max, scale, aggregate):
    """sum_c max(q_c m_c, q_c M_c) per query head, scaled, then summed or maxed over the group: [B, Hkv, P]."""
    bsz, hq, d = q.shape
    hkv = page_min.shape[1]
    qg = q.float().view(bsz, hkv, hq // hkv, 1, d)
    lo, hi = page_min.float().unsqueeze(2), page_max.float().unsqueeze(2)
    per_head = torch.maximum(qg * lo, qg * hi).sum(-1) * scale  # [B, Hkv, g, P]
    return per_head.sum(2) if aggregate == "sum" else per_head.amax(2)


@pytest.mark.parametrize(
    "dtype,page_size,aggregate,out_dtype",
    [
        (torch.bfloat16, 16, "sum", torch.float32),
        (torch.bfloat16, 16, "max", torch.float16),
        (torch.float32, 7, "sum", torch.float32),  # a partial last page
        (torch.float16, 32, "max", torch.float32),
    ],
)
def test_page_scores_match_torch(dtype, page_size, aggregate, out_dtype):
    bsz, hq, hkv, n, d = SHAPE
    g = gen(page_size)
    q = torch.randn(bsz, hq, d, generator=g, device=DEVICE).to(dtype)
    keys = torch.randn(bsz, hkv, n, d, generator=g, device=DEVICE).to(dtype)
    page_min, page_max = page_score.page_bounds_from_keys(keys, page_size)
    pages = -(-n // page_size)
    assert page_min.shape == (bsz, hkv, pages, d) and bool((page_min <= page_max).all())
    assert torch.equal(page_max[0, 1, -1], keys[0, 1, (pages - 1) * page_size :].amax(0))  # the written keys only
    out = torch.full((bsz, hkv, pages), float("nan"), dtype=out_dtype, device=DEVICE)
    scores = page_score.page_scores(q, page_min, page_max, aggregate=aggregate, out=out)
    ref = reference(q, page_min, page_max, d**-0.5, aggregate)
    assert not torch.isnan(scores).any()
    assert rel_err(scores, ref) < (1e-3 if out_dtype == torch.float16 else 1e-5)


def test_bound_holds_for_every_key_of_the_page():
    bsz, hq, hkv, n, d = 2, 4, 2, 64, 32
    g = gen(3)
    q = torch.randn(bsz, hq, d, generator=g, device=DEVICE)
    keys = torch.randn(bsz, hkv, n, d, generator=g, device=DEVICE)
    page_min, page_max = page_score.page_bounds_from_keys(keys, 8)
    bound = page_score.page_scores(q, page_min, page_max, aggregate="max", scale=1.0)  # [B, Hkv, P]
    logits = torch.einsum("bhgd,bhnd->bhgn", q.view(bsz, hkv, hq // hkv, d), keys).amax(2)  # [B, Hkv, N]
    assert bool((logits.view(bsz, hkv, -1, 8).amax(-1) <= bound + 1e-4).all())


def test_fused_counts_are_the_coarse_bins_of_the_written_scores():
    bsz, hq, hkv, n, d = 2, 8, 2, 320, 64
    g = gen(4)
    q = torch.randn(bsz, hq, d, generator=g, device=DEVICE).bfloat16()
    page_min, page_max = page_score.page_bounds_from_keys(torch.randn(bsz, hkv, n, d, generator=g, device=DEVICE), 4)
    hist = torch.zeros(bsz * hkv, 256, dtype=torch.int32, device=DEVICE)
    out = page_score.page_scores(q, page_min.bfloat16(), page_max.bfloat16(), hist=hist)
    ref = torch.stack([torch.bincount(row, minlength=256) for row in coarse_bins(out.view(bsz * hkv, -1))])
    assert torch.equal(hist.long(), ref)


@pytest.mark.parametrize("aggregate", ["sum", "max"])
def test_gpu_form_of_the_quest_selector(aggregate):
    bsz, hq, hkv, n, d = 2, 8, 2, 96, 32
    g = gen(12)
    q = torch.randn(bsz, hq, d, generator=g, device=DEVICE)
    keys = torch.randn(bsz, hkv, n, d, generator=g, device=DEVICE)
    ctx = SelectionContext(q[:, :, None].cpu(), keys.cpu(), torch.ones(bsz, 1, 1, n, dtype=torch.bool), d**-0.5)
    cpu = Quest(page_size=16, granularity="kv_head", aggregate=aggregate).page_scores(ctx)[:, :, 0]
    ours = page_score.page_scores(q, *page_score.page_bounds_from_keys(keys, 16), aggregate=aggregate)
    torch.testing.assert_close(ours.cpu(), cpu, rtol=1e-5, atol=1e-5)


def test_bad_input_is_refused():
    q = torch.randn(2, 8, 32, device=DEVICE)
    page_min, page_max = page_score.page_bounds_from_keys(torch.randn(2, 2, 64, 32, device=DEVICE), 16)
    cases = [
        (dict(q=q[..., :16]), ValueError, "do not fit"),
        (dict(page_max=page_max[:, :, :2]), ValueError, "alike"),
        (dict(aggregate="mean"), ValueError, "aggregate"),
        (dict(out=torch.empty(2, 2, 3, device=DEVICE)), ValueError, "out must be"),
        (dict(q=q.int()), TypeError, "floating point"),
    ]
    for change, error, match in cases:
        args = dict(q=q, page_min=page_min, page_max=page_max) | change
        with pytest.raises(error, match=match):
            page_score.page_scores(args.pop("q"), args.pop("page_min"), args.pop("page_max"), **args)

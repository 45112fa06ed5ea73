"""Double Sparsity label scoring against torch and against the CPU DoubleSparsity selector's approximate logits."""

from __future__ import annotations

import pytest
import torch
from triton_cases import DEVICE, FULL, coarse_bins, gen, load, rel_err

label_score = load("label_score")

from ctxsparse.selectors import Calibration, DoubleSparsity, SelectionContext  # noqa: E402

# (batch, query heads, kv heads, tokens, head_dim)
SHAPE = (8, 32, 8, 32768, 128) if FULL else (2, 8, 2, 300, 64)


def reference(q, labels, channels, scale, aggregate):
    """scale * sum_c q_g[ch_c] label_c for every query head g, then summed or maxed over the group: [B, Hkv, N]."""
    bsz, hq, _ = q.shape
    hkv, r = channels.shape
    qg = q.float().view(bsz, hkv, hq // hkv, -1)
    q_ch = qg.gather(3, channels.long().view(1, hkv, 1, r).expand(bsz, hkv, hq // hkv, r))
    per_head = torch.einsum("bhgr,bhnr->bhgn", q_ch, labels.float()) * scale
    return per_head.sum(2) if aggregate == "sum" else per_head.amax(2)


def make(seed, r, label_dtype, shape=SHAPE):
    bsz, hq, hkv, n, d = shape
    g = gen(seed)
    q = torch.randn(bsz, hq, d, generator=g, device=DEVICE).to(label_dtype)
    keys = torch.randn(bsz, hkv, n, d, generator=g, device=DEVICE).to(label_dtype)
    channels = torch.stack([torch.randperm(d, generator=g, device=DEVICE)[:r] for _ in range(hkv)]).int()
    return q, keys, channels


@pytest.mark.parametrize(
    "r,label_dtype,out_dtype,aggregate",
    [
        (16, torch.bfloat16, torch.float32, "sum"),
        (16, torch.bfloat16, torch.float16, "max"),
        (12, torch.float32, torch.float32, "max"),  # r not a power of two
        (8, torch.float16, torch.float16, "sum"),
        (32, torch.float16, torch.float32, "max"),  # four 8-channel loads per token
    ],
)
def test_label_scores_match_torch(r, label_dtype, out_dtype, aggregate):
    q, keys, channels = make(r, r, label_dtype)
    labels = label_score.label_cache_from_keys(keys, channels)
    assert labels.shape == (*keys.shape[:3], r)
    assert torch.equal(labels[1, 1, :, 3], keys[1, 1, :, int(channels[1, 3])])
    out = torch.full((*keys.shape[:3],), float("nan"), dtype=out_dtype, device=DEVICE)  # poisoned
    scores = label_score.label_scores(q, labels, channels, aggregate=aggregate, out=out)
    ref = reference(q, labels, channels, q.shape[-1] ** -0.5, aggregate)
    assert scores.data_ptr() == out.data_ptr() and not torch.isnan(scores).any()
    assert rel_err(scores, ref) < (1e-3 if out_dtype == torch.float16 else 1e-5)


def test_fused_counts_are_the_coarse_bins_of_the_written_scores():
    q, keys, channels = make(1, 16, torch.bfloat16)
    labels = label_score.label_cache_from_keys(keys, channels)
    bsz, hkv, n = labels.shape[:3]
    hist = torch.zeros(bsz * hkv, 256, dtype=torch.int32, device=DEVICE)
    out = torch.empty(bsz, hkv, n, dtype=torch.float16, device=DEVICE)
    label_score.label_scores(q, labels, channels, out=out, hist=hist, scale=0.5)
    ref = torch.stack([torch.bincount(row, minlength=256) for row in coarse_bins(out.view(bsz * hkv, n))])
    assert torch.equal(hist.long(), ref)


@pytest.mark.parametrize("aggregate,cpu_aggregate,factor", [("sum", "logit_mean", 4), ("max", "logit_max", 1)])
def test_gpu_form_of_the_double_sparsity_selector(aggregate, cpu_aggregate, factor):
    """The kernel's group scores are the CPU selector's kv-head approximate logits (sum = group size x mean)."""
    bsz, hq, hkv, n, d, r = 2, 8, 2, 96, 32, 6
    g = gen(11)
    q = torch.randn(bsz, hq, d, generator=g, device=DEVICE)
    keys = torch.randn(bsz, hkv, n, d, generator=g, device=DEVICE)
    perms = [[torch.randperm(d).tolist() for _ in range(hkv)]]
    cal = Calibration("gpu-test", 1, hkv, d, perms)
    selector = DoubleSparsity(channels=r, calibration=cal, granularity="kv_head", aggregate=cpu_aggregate)
    ctx = SelectionContext(q[:, :, None].cpu(), keys.cpu(), torch.ones(bsz, 1, 1, n, dtype=torch.bool), d**-0.5,
                           num_layers=1, model_key="gpu-test")  # fmt: skip
    cpu = selector.approx_scores(ctx)[:, :, 0]  # [B, Hkv, N]
    channels = cal.channels_for(0, r).to(DEVICE)
    ours = label_score.label_scores(q, label_score.label_cache_from_keys(keys, channels), channels, aggregate=aggregate)
    torch.testing.assert_close(ours.cpu(), cpu * factor, rtol=1e-5, atol=1e-5)


def test_bad_input_is_refused():
    q, keys, channels = make(2, 16, torch.float32, shape=(2, 8, 2, 40, 32))
    labels = label_score.label_cache_from_keys(keys, channels)
    cases = [
        (dict(q=q[:, :3]), ValueError, "do not fit"),
        (dict(channels=channels[:, :4]), ValueError, "channels must be"),
        (dict(channels=channels.repeat(1, 3), labels=labels.repeat(1, 1, 1, 3)), ValueError, "1 to min"),
        (dict(channels=channels.float()), ValueError, "channels must be"),
        (dict(aggregate="mean"), ValueError, "aggregate"),
        (dict(out=torch.empty(2, 2, 40, dtype=torch.bfloat16, device=DEVICE)), ValueError, "out must be"),
        (dict(hist=torch.empty(4, 255, dtype=torch.int32, device=DEVICE)), ValueError, "hist must be"),
        (dict(labels=labels.transpose(2, 3).contiguous().transpose(2, 3)), ValueError, "contiguous"),
    ]
    for change, error, match in cases:
        args = dict(q=q, labels=labels, channels=channels) | change
        with pytest.raises(error, match=match):
            label_score.label_scores(args.pop("q"), args.pop("labels"), args.pop("channels"), **args)

"""The oracle's key-score kernel and the length masking of the label and page score kernels (Triton interpreter)."""

from __future__ import annotations

import pytest
import torch

from ctxsparse.gpu_index.key_score import launch_key_scores
from ctxsparse.gpu_index.label_score import launch_label_scores
from ctxsparse.gpu_index.launch import INTERPRETED
from ctxsparse.gpu_index.page_score import launch_page_scores

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter test")


@pytest.mark.parametrize("aggregate", ["sum", "max"])
def test_key_scores_are_the_groups_logits_counted_and_masked(aggregate):
    """The oracle's kernel: scale * q_g . k over every key of a strided [B, N, Hkv, D] cache, summed or maxed over
    each GQA group, -inf past each row's length, its coarse bins counted."""
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 8, 64, generator=gen).bfloat16()
    keys = torch.randn(3, 150, 2, 64, generator=gen).bfloat16()  # a cache of 3 rows, 2 of them in the batch
    out = torch.empty(4, 150, dtype=torch.float16)
    hist = torch.zeros(4, 256, dtype=torch.int32)
    launch_key_scores(q, keys, out, hist, 0.125, aggregate, lengths=torch.tensor([99, 19], dtype=torch.int32),
                      length_add=1)  # fmt: skip
    logits = torch.einsum("bhgd,bnhd->bhgn", q.float().view(2, 2, 4, 64), keys[:2].float()) * 0.125
    want = (logits.sum(2) if aggregate == "sum" else logits.amax(2)).reshape(4, 150)
    visible = torch.arange(150) < torch.tensor([100, 100, 20, 20]).view(-1, 1)
    assert torch.allclose(out.float()[visible], want[visible], atol=1e-2, rtol=1e-2)
    assert bool((out[~visible] == float("-inf")).all())
    assert hist.sum(1).tolist() == [150] * 4


def test_score_kernels_mask_items_past_each_rows_length():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 64, generator=gen).bfloat16()
    labels = torch.randn(2, 2, 40, 8, generator=gen).bfloat16()
    channels = torch.stack([torch.randperm(64, generator=gen)[:8] for _ in range(2)]).int()
    lengths = torch.tensor([20, 6, 99], dtype=torch.int32)  # a third entry past the batch is never read
    full, masked = torch.empty(4, 40), torch.empty(4, 40)
    launch_label_scores(q, labels, channels, full, None, 0.125, "sum")
    launch_label_scores(q, labels, channels, masked, None, 0.125, "sum", lengths=lengths, length_add=1)
    for row, visible in enumerate((21, 21, 7, 7)):  # rows are (b, kv head); visible = length + 1
        assert torch.equal(masked[row, :visible], full[row, :visible])
        assert bool((masked[row, visible:] == float("-inf")).all())
    lo = torch.randn(2, 2, 10, 64, generator=gen).bfloat16()
    hi = lo + torch.rand(2, 2, 10, 64, generator=gen).bfloat16()
    pages_full, pages_masked = torch.empty(4, 10), torch.empty(4, 10)
    launch_page_scores(q, lo, hi, pages_full, None, 0.125, "max")
    launch_page_scores(q, lo, hi, pages_masked, None, 0.125, "max", lengths=lengths, length_add=1, page_size=4)
    for row, pages in enumerate((6, 6, 2, 2)):  # ceil(21 / 4) and ceil(7 / 4) pages hold a visible token
        assert torch.equal(pages_masked[row, :pages], pages_full[row, :pages])
        assert bool((pages_masked[row, pages:] == float("-inf")).all())


def test_key_scores_per_query_head_keep_each_heads_logits():
    """aggregate 'none': one row per query head (b * Hq + h), each its own scaled logits, -inf past the length."""
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(2, 6, 64, generator=gen).bfloat16()
    keys = torch.randn(2, 90, 2, 64, generator=gen).bfloat16()
    out = torch.empty(12, 90)
    launch_key_scores(q, keys, out, None, 0.125, "none", lengths=torch.tensor([40, 89], dtype=torch.int32),
                      length_add=1)  # fmt: skip
    logits = torch.einsum("bhgd,bnhd->bhgn", q.float().view(2, 2, 3, 64), keys.float()) * 0.125
    want = logits.reshape(12, 90)
    visible = torch.arange(90) < torch.tensor([41] * 6 + [90] * 6).view(-1, 1)
    assert torch.allclose(out[visible], want[visible], atol=1e-4, rtol=1e-4)
    assert bool((out[~visible] == float("-inf")).all())
    with pytest.raises(ValueError, match="hist=None"):
        launch_key_scores(q, keys, out, torch.zeros(12, 256, dtype=torch.int32), 0.125, "none")

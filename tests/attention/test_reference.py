import pytest
import torch

from ctxsparse import Selection
from ctxsparse.attention import dense_attention_reference, sparse_attention_reference


def test_weights_enter_numerator_and_denominator():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 1, 8), torch.randn(1, 1, 6, 8), torch.randn(1, 1, 6, 8)
    idx = torch.tensor([[[[0, 2, 5]]]], dtype=torch.int32)
    w = torch.tensor([[[[1.0, 3.0, 0.5]]]])
    out = sparse_attention_reference(q, k, v, Selection(idx, weights=w), scale=0.3)
    for h in range(2):
        s = (k[0, 0, [0, 2, 5]] @ q[0, h, 0]) * 0.3
        p = w[0, 0, 0] * s.exp()
        expected = (p[:, None] * v[0, 0, [0, 2, 5]]).sum(0) / p.sum()
        torch.testing.assert_close(out[0, h, 0], expected, atol=1e-6, rtol=1e-5)


def test_lengths_and_lse():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 1, 1, 4), torch.randn(1, 1, 5, 4), torch.randn(1, 1, 5, 4)
    sel = Selection(torch.tensor([[[[1, 3, 4]]]], dtype=torch.int32), lengths=torch.tensor([[[2]]], dtype=torch.int32))
    out, lse = sparse_attention_reference(q, k, v, sel, scale=1.0, return_lse=True)
    vis = torch.zeros(1, 1, 1, 5, dtype=torch.bool)
    vis[..., [1, 3]] = True
    torch.testing.assert_close(out, dense_attention_reference(q, k, v, vis, 1.0))
    torch.testing.assert_close(lse[0, 0, 0], torch.logsumexp(k[0, 0, [1, 3]] @ q[0, 0, 0], 0))


def test_bad_inputs():
    q, k = torch.randn(1, 3, 1, 4), torch.randn(1, 2, 5, 4)
    sel = Selection(torch.zeros(1, 3, 1, 1, dtype=torch.int32))
    with pytest.raises(ValueError, match="multiple"):
        sparse_attention_reference(q, k, k, sel)
    with pytest.raises(ValueError, match="empty"):
        sparse_attention_reference(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 0, 4), torch.randn(1, 2, 0, 4), sel)
    with pytest.raises(IndexError, match="must lie in"):
        bad = Selection(torch.full((1, 2, 1, 1), 9, dtype=torch.int32))
        sparse_attention_reference(torch.randn(1, 2, 1, 4), k, k, bad)


def _problem():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 1, 16, generator=gen)
    k = torch.randn(1, 2, 10, 16, generator=gen)
    v = torch.randn(1, 2, 10, 16, generator=gen)
    return q, k, v


@pytest.mark.parametrize("bad", [-1, 10, 99])
def test_sparse_attention_refuses_positions_outside_the_cache(bad):
    from ctxsparse.attention.dispatch import sparse_attention

    q, k, v = _problem()
    indices = torch.tensor([[[[0, bad]], [[1, 2]]]], dtype=torch.int32)
    with pytest.raises(IndexError, match=r"within \[0, 10\)"):
        sparse_attention(q, k, v, Selection(indices), scale=0.25)
    lengths = torch.tensor([[[1], [2]]], dtype=torch.int32)  # slots past lengths are ignored, whatever they hold
    out = sparse_attention(q, k, v, Selection(indices, lengths=lengths), scale=0.25)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_sparse_attention_refuses_nan_or_infinite_queries(value):
    from ctxsparse.attention.dispatch import sparse_attention

    q, k, v = _problem()
    q[0, 1, 0, 3] = value
    indices = torch.tensor([[[[0, 1]], [[1, 2]]]], dtype=torch.int32)
    with pytest.raises(ValueError, match="query holds 1 NaN or infinite values"):
        sparse_attention(q, k, v, Selection(indices), scale=0.25)
    with pytest.raises(ValueError, match="NaN or infinite"):
        sparse_attention_reference(q, k, v, Selection(indices))

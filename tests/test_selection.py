import pytest
import torch

from ctxsparse import Selection


def test_shapes_checked():
    with pytest.raises(ValueError, match=r"\[B, H, Tq, k\]"):
        Selection(torch.zeros(2, 3, 4, dtype=torch.int32))
    with pytest.raises(TypeError, match="int32 or int64"):
        Selection(torch.zeros(1, 1, 1, 2))
    with pytest.raises(ValueError, match="lengths"):
        Selection(torch.zeros(1, 2, 1, 3, dtype=torch.int32), lengths=torch.zeros(1, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="weights"):
        Selection(torch.zeros(1, 2, 1, 3, dtype=torch.int32), weights=torch.ones(1, 2, 1, 2))


def test_mask_counts_duplicates_once_and_respects_lengths():
    idx = torch.tensor([[[[3, 3, 1, 7]]]], dtype=torch.int32)
    sel = Selection(idx, lengths=torch.tensor([[[3]]], dtype=torch.int32))
    mask = sel.as_mask(8)
    assert mask[0, 0, 0].nonzero().flatten().tolist() == [1, 3]
    assert sel.counts().item() == 3


def test_to_query_heads_repeats_groups():
    idx = torch.arange(2 * 2 * 1 * 3, dtype=torch.int32).view(2, 2, 1, 3)
    sel = Selection(idx).to_query_heads(6)
    assert sel.indices.shape == (2, 6, 1, 3)
    assert torch.equal(sel.indices[:, 0], sel.indices[:, 2]) and torch.equal(sel.indices[:, 3], idx[:, 1])
    with pytest.raises(ValueError, match="evenly"):
        Selection(idx).to_query_heads(5)

"""vAttention's split and assembly kernels against the selector's tensor code (Triton interpreter, or CUDA)."""

from __future__ import annotations

import pytest
import torch

from ctxsparse.gpu_index.hoeffding import launch_assemble, launch_split
from ctxsparse.gpu_index.launch import INTERPRETED
from ctxsparse.selectors.vattention import split_budget

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
pytestmark = pytest.mark.skipif(not CUDA and not INTERPRETED, reason="needs CUDA or the Triton interpreter")


@pytest.mark.parametrize(("epsilon", "min_samples", "spread"), [(0.05, 16, 1.0), (0.3, 4, 3.0), (0.9, 1, 0.3)])
def test_split_kernel_keeps_and_draws_what_split_budget_does(epsilon, min_samples, spread):
    """Random rows: sorted top logits with invalid tails, partial sinks/windows, residuals from empty to large."""
    gen = torch.Generator().manual_seed(int(epsilon * 100) + min_samples)
    rows, top_slots, sw_slots = 64, 40, 12
    top = (torch.randn(rows, top_slots, generator=gen) * spread).sort(dim=1, descending=True).values
    count = torch.randint(0, top_slots + 1, (rows,), generator=gen)
    top[torch.arange(top_slots).view(1, -1) >= count.view(-1, 1)] = float("-inf")
    sw = torch.randn(rows, sw_slots, generator=gen) * spread
    sw[torch.rand(rows, sw_slots, generator=gen) < 0.2] = float("-inf")
    rest = torch.randint(0, top_slots + 1, (rows,), generator=gen).maximum(count)
    residual0 = torch.randint(0, 400, (rows,), generator=gen)
    residual0[:8] = 0  # rows whose residual is empty
    keep = torch.zeros(rows, dtype=torch.int64, device=DEVICE)
    draw = torch.zeros(rows, dtype=torch.int64, device=DEVICE)
    args = [x.to(DEVICE) for x in (top, sw, count, rest, residual0)]
    launch_split(*args, keep, draw, epsilon, 0.05, min_samples)
    one = (rows, 1, 1)
    _, want_keep, want_draw = split_budget(
        sw.view(rows, 1, 1, 1, -1), top.view(rows, 1, 1, 1, -1), count.view(one), rest.view(one),
        residual0.view(one), epsilon, 0.05, min_samples,
    )  # fmt: skip
    assert keep.cpu().tolist() == want_keep.view(-1).tolist()
    assert draw.cpu().tolist() == want_draw.view(-1).tolist()
    assert 0 < int(keep.sum()) and 0 < int(draw.sum())  # both parts exercised


def test_assemble_kernel_writes_sink_window_kept_samples_and_padding():
    s, t = 3, 5
    sw_tokens = torch.tensor([[0, 1, 9], [0, 1, 2]])
    sw_weights = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    top = torch.tensor([[20, 21, 22, 23, 24], [30, 31, 32, 33, 34]])
    drawn = torch.tensor([[40, 41, 42, 43, 44], [50, 51, 52, 53, 54]])
    keep, draw, size = torch.tensor([2, 0]), torch.tensor([2, 5]), torch.tensor([10, 5])
    tokens = torch.full((2, s + t), -1, dtype=torch.int32, device=DEVICE)
    weights = torch.full((2, s + t), -1.0, device=DEVICE)
    args = [x.to(DEVICE) for x in (sw_tokens, sw_weights, top, drawn, keep, draw, size)]
    launch_assemble(*args, tokens, weights)
    assert tokens.cpu().tolist() == [[0, 1, 9, 20, 21, 40, 41, 0], [0, 1, 2, 50, 51, 52, 53, 54]]
    assert weights.cpu().tolist() == [[1, 1, 1, 1, 1, 5, 5, 0], [1, 1, 0, 1, 1, 1, 1, 1]]

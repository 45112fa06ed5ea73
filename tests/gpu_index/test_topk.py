"""The Triton top-k against torch.topk: the same set of indices, on every row, for k/N from 1/2 to 1/100."""

from __future__ import annotations

import math

import pytest
import torch
from triton_cases import CUDA, DEVICE, FULL, coarse_bins, gen, load

topk = load("topk")
launch = load("launch")

# (rows, length) per k/N ratio; tiny under the interpreter, decode-sized on a GPU
SHAPE = (64, 131072) if FULL else (3, 1200)
RATIOS = (2, 10, 100)


def distinct_rows(rows: int, n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Rows of distinct values in random order (float16: integers below 2048 and their halves are exact)."""
    if dtype == torch.float16:
        vals = torch.randperm(4096, generator=gen(seed), device=DEVICE)[:n].float() / 2 - 1024
        perms = torch.stack([torch.randperm(n, generator=gen(seed + r), device=DEVICE) for r in range(rows)])
        return vals[perms].half()
    return torch.randn(rows, n, generator=gen(seed), device=DEVICE)


def assert_same_set(idx: torch.Tensor, scores: torch.Tensor, k: int) -> None:
    ref = torch.topk(scores.float(), k, dim=1).indices
    assert idx.shape == (scores.shape[0], k) and idx.dtype == torch.int32
    ours, theirs = idx.long().sort(1).values, ref.sort(1).values
    assert torch.equal(ours, theirs)


def assert_top_values(idx: torch.Tensor, scores: torch.Tensor, k: int) -> None:
    """Where ties are possible: k distinct indices per row whose values are torch.topk's values."""
    assert all(len(set(row.tolist())) == k for row in idx)
    ours = scores.gather(1, idx.long()).float().sort(1).values
    assert torch.equal(ours, torch.topk(scores.float(), k, dim=1).values.sort(1).values)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("ratio", RATIOS)
def test_same_set_as_torch_topk(dtype, ratio):
    rows, n = SHAPE if dtype == torch.float32 else (SHAPE[0], min(SHAPE[1], 4096))
    scores = distinct_rows(rows, n, dtype, seed=ratio)
    k = math.ceil(n / ratio)
    assert_same_set(topk.topk_indices(scores, k), scores, k)


@pytest.mark.parametrize("k", [1, 5, 299, 300])
def test_extreme_k(k):
    scores = torch.randn(2, 300, generator=gen(k), device=DEVICE)
    assert_same_set(topk.topk_indices(scores, k), scores, k)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # float16 rounding saturates to inf
@pytest.mark.parametrize(
    "name",
    ["one_coarse_bin", "negative_one_bin", "tiny_mixed_signs", "wide_range", "infinities"],
)
def test_hard_distributions(name):
    """Scores that all share one coarse bin (the exact passes decide), span 80 octaves, or tie at +-inf."""
    g = gen(7)
    shape = (2, 700)
    scores = {
        "one_coarse_bin": 1.0 + torch.rand(shape, generator=g, device=DEVICE) * 1e-3,
        "negative_one_bin": -1.0 - torch.rand(shape, generator=g, device=DEVICE) * 1e-3,
        "tiny_mixed_signs": (torch.rand(shape, generator=g, device=DEVICE) - 0.5) * 1e-30,
        "wide_range": torch.randn(shape, generator=g, device=DEVICE) * torch.exp(
            10 * torch.randn(shape, generator=g, device=DEVICE)
        ),
        "infinities": torch.randn(shape, generator=g, device=DEVICE).index_fill(
            1, torch.arange(0, 700, 50, device=DEVICE), float("inf")
        ).index_fill(1, torch.arange(1, 700, 50, device=DEVICE), -float("inf")),
    }[name]  # fmt: skip
    for k in (1, 14, 70, 350, 699):
        assert_top_values(topk.topk_indices(scores, k), scores, k)


def test_ties_give_k_distinct_indices_of_top_values():
    """With ties at the k-th value any of them may be taken, but exactly k distinct ones of the right values."""
    scores = torch.randint(0, 5, (3, 500), generator=gen(3), device=DEVICE).half()
    scores[1] = 2.0  # a row of one value
    for k in (1, 100, 250, 500):
        assert_top_values(topk.topk_indices(scores, k), scores, k)


@pytest.mark.parametrize("k", [1, 999, 3000, 6143])
def test_many_candidates_shared_by_several_resolve_programs(k):
    """float16 rows whose scores all share one coarse bin, with heavy ties: the candidate list spans six
    resolve tiles, so several programs per row place candidates above T upwards and ties downwards."""
    scores = (1.0 + torch.randint(0, 64, (2, 6144), generator=gen(k), device=DEVICE) / 1024).half()
    runner = topk.RowTopK()
    runner.plan(2, 6144, k, torch.float16, DEVICE)
    runner.out.fill_(-1)
    out = runner.run(scores)
    assert int(runner.counts[0, 0] >> 32) == 6144  # every score a candidate
    assert_top_values(out, scores, k)


def test_plan_once_run_many():
    """Successive runs on one plan are independent: each zeroes its histograms and counters first."""
    runner = topk.RowTopK()
    runner.plan(3, 900, 45, torch.float32, DEVICE)
    for seed in range(3):
        scores = torch.randn(3, 900, generator=gen(seed), device=DEVICE)
        out = runner.run(scores)
        assert out.data_ptr() == runner.out.data_ptr()
        assert_same_set(out, scores, 45)
        assert int(runner.hist.sum()) == 3 * 900  # this call's counts only


def test_count_step_is_a_histogram_of_coarse_bins():
    scores = torch.randn(4, 3000, generator=gen(5), device=DEVICE) * 20
    runner = topk.RowTopK()
    runner.plan(4, 3000, 30, torch.float32, DEVICE)
    runner.count(scores)
    ref = torch.stack([torch.bincount(row, minlength=256) for row in coarse_bins(scores)])
    assert torch.equal(runner.hist.long(), ref)
    runner.count(scores)  # counting again starts from zero
    assert torch.equal(runner.hist.long(), ref)


def test_coarse_bins_never_reverse_the_order():
    x = torch.cat([torch.tensor([-float("inf"), -1e30, -70000.0, -1.0, -0.0, 0.0, 1e-30, 1.0, 7e4, float("inf")]),
                   torch.randn(500) * 100]).sort().values  # fmt: skip
    bins = coarse_bins(x)
    rising = x[1:] > x[:-1]  # -0.0 == 0.0 may sort either way; their bins differ
    assert bool((bins[1:] >= bins[:-1])[rising].all()) and int(bins.min()) >= 0 and int(bins.max()) < 256


def test_split_rows_covers_every_item():
    for rows, length, block in [(8, 131072, 2048), (64, 131072, 2048), (1, 10, 2048), (64, 8192, 32)]:
        parts, chunk = launch.split_rows(rows, length, block, 132)
        assert chunk % block == 0 and (parts - 1) * chunk < length <= parts * chunk
        assert rows * parts <= max(rows, 2 * launch.PROGRAMS_PER_SM * 132)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda r: r.plan(2, 100, 0, torch.float32, DEVICE), ValueError, "k must lie"),
        (lambda r: r.plan(2, 100, 101, torch.float32, DEVICE), ValueError, "k must lie"),
        (lambda r: r.plan(2, 100, 5, torch.bfloat16, DEVICE), TypeError, "float32 or float16"),
        (lambda r: r.run(torch.zeros(2, 100, device=DEVICE)), RuntimeError, "plan"),
    ],
)
def test_bad_plans_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call(topk.RowTopK())


def test_bad_scores_are_refused():
    runner = topk.RowTopK()
    runner.plan(2, 100, 5, torch.float32, DEVICE)
    with pytest.raises(ValueError, match="planned for"):
        runner.run(torch.zeros(2, 99, device=DEVICE))
    with pytest.raises(ValueError, match="contiguous"):
        runner.run(torch.zeros(100, 2, device=DEVICE).t())
    with pytest.raises(TypeError, match="float32 or float16"):
        topk.topk_indices(torch.zeros(2, 100, dtype=torch.int32, device=DEVICE), 5)
    with pytest.raises(ValueError, match=r"\[rows, length\]"):
        topk.topk_indices(torch.zeros(100, device=DEVICE), 5)


gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


@gpu
def test_no_host_sync_and_cuda_graph_replay():
    rows, n, k = 64, 131072, 2622
    runner = topk.RowTopK()
    runner.plan(rows, n, k, torch.float16, DEVICE)
    scores = torch.randn(rows, n, device=DEVICE).half()
    runner.run(scores)  # compile outside the checks
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        runner.run(scores)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        runner.run(scores)
    for seed in range(2):
        scores.copy_(distinct_rows(rows, n, torch.float32, seed).half())
        runner.out.fill_(-1)
        graph.replay()
        torch.cuda.synchronize()
        assert_top_values(runner.out, scores, k)

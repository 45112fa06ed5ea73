"""index -> top-k -> sparse_decode as one call, against torch: scores, the selected set, and the attention output."""

from __future__ import annotations

import math

import pytest
import torch
from triton_cases import CUDA, DEVICE, FULL, gen, load, rel_err

gpu_index = load("")

from ctxsparse.attention import sparse_attention_reference  # noqa: E402
from ctxsparse.selection import Selection  # noqa: E402

# (batch, query heads, kv heads, tokens, head_dim, label channels)
SHAPE = (8, 32, 8, 32768, 128, 16) if FULL else (2, 8, 2, 232, 64, 8)
BF16_TOL = 1.5e-2  # bf16 output against the fp32 reference


def make(seed, shape=SHAPE):
    bsz, hq, hkv, n, d, r = shape
    g = gen(seed)
    q = torch.randn(bsz, hq, d, generator=g, device=DEVICE).bfloat16()
    keys = torch.randn(bsz, hkv, n, d, generator=g, device=DEVICE).bfloat16()
    values = torch.randn(bsz, hkv, n, d, generator=g, device=DEVICE).bfloat16()
    channels = torch.stack([torch.randperm(d, generator=g, device=DEVICE)[:r] for _ in range(hkv)])
    return q, keys, values, channels


def attention_over(q, keys, values, indices, weights=None):
    """Reference sparse attention (fp32) over per-kv-head token indices [B, Hkv, k]."""
    sel = Selection(indices[:, :, None], None, None if weights is None else weights[:, :, None])
    out = sparse_attention_reference(q[:, :, None].float(), keys.float(), values.float(), sel)
    return out[:, :, 0]


def assert_top_values(indices: torch.Tensor, scores: torch.Tensor, k: int) -> None:
    """k distinct indices per row whose scores are the k largest (robust to float16 ties)."""
    rows = indices.reshape(-1, indices.shape[-1]).long()
    flat = scores.reshape(rows.shape[0], -1).float()
    assert rows.shape[1] == k and all(len(set(r.tolist())) == k for r in rows)
    assert torch.equal(flat.gather(1, rows).sort(1).values, flat.topk(k, dim=1).values.sort(1).values)


def plan_ds(q, channels, k, n, **kw):
    pipe = gpu_index.DoubleSparsityDecode()
    bsz, hq, d = q.shape
    pipe.plan(batch=bsz, num_q_heads=hq, num_kv_heads=channels.shape[0], head_dim=d, context=n, k=k,
              channels=channels, device=DEVICE, **kw)  # fmt: skip
    return pipe


@pytest.mark.parametrize("sparsity,aggregate", [(10, "sum"), (3, "max"), (50, "sum")])
def test_double_sparsity_pipeline(sparsity, aggregate):
    q, keys, values, channels = make(sparsity)
    n = keys.shape[2]
    k = math.ceil(n / sparsity)
    labels = gpu_index.label_cache_from_keys(keys, channels)
    pipe = plan_ds(q, channels, k, n, aggregate=aggregate)
    pipe.out.fill_(float("nan"))
    out = pipe.run(q, keys, values, labels)
    assert out.data_ptr() == pipe.out.data_ptr() and not torch.isnan(out).any()
    ref_scores = gpu_index.label_scores(q, labels, channels, aggregate=aggregate)
    assert rel_err(pipe.scores, ref_scores) < 1e-3  # float16 storage of the scores
    assert_top_values(pipe.indices, pipe.scores, k)
    assert_torch_set_where_untied(pipe.indices, pipe.scores, k)
    assert rel_err(out, attention_over(q, keys, values, pipe.indices)) < BF16_TOL


def assert_torch_set_where_untied(indices: torch.Tensor, scores: torch.Tensor, k: int) -> None:
    """Rows where no score ties the k-th value have exactly torch.topk's set (float16 scores tie often at full
    size, where any tied candidate may be taken; tied rows are checked by value in assert_top_values)."""
    flat = scores.reshape(-1, scores.shape[-1]).float()
    top = flat.topk(k, dim=1)
    untied = (flat >= top.values[:, -1:]).sum(1) == k
    ours = indices.reshape(flat.shape[0], -1).long().sort(1).values
    assert torch.equal(ours[untied], top.indices.sort(1).values[untied])


@pytest.mark.parametrize("page_size,sparsity", [(16, 5), (8, 20)])
def test_quest_pipeline(page_size, sparsity):
    q, keys, values, _ = make(page_size)
    bsz, hq, hkv, n, d, _ = SHAPE
    n = n - 3  # a partial last page
    keys, values = keys[:, :, :n], values[:, :, :n]
    k = math.ceil(n / sparsity)
    page_min, page_max = gpu_index.page_bounds_from_keys(keys, page_size)
    pipe = gpu_index.QuestDecode()
    pipe.plan(batch=bsz, num_q_heads=hq, num_kv_heads=hkv, head_dim=d, context=n, k=k, page_size=page_size,
              device=DEVICE)  # fmt: skip
    out = pipe.run(q, keys, values, page_min, page_max)
    k_pages = math.ceil(k / page_size)
    assert pipe.k == k_pages * page_size and pipe.weights is not None
    assert_top_values(pipe.page_indices, pipe.scores, k_pages)
    # every chosen page expands to its tokens; slots past the context weigh 0 and stay readable
    pages = pipe.page_indices.long()
    want = (pages.unsqueeze(-1) * page_size + torch.arange(page_size, device=DEVICE)).flatten(2)
    assert torch.equal(pipe.weights, (want < n).float())
    assert torch.equal(pipe.tokens.long(), want.clamp_max(n - 1))
    ref = attention_over(q, keys, values, pipe.tokens, pipe.weights)
    assert rel_err(out, ref) < BF16_TOL


def test_plan_once_run_many():
    """A second step with new queries on the same plan is as right as the first (the top-k state is reset)."""
    q, keys, values, channels = make(21)
    n, k = keys.shape[2], math.ceil(keys.shape[2] / 20)
    labels = gpu_index.label_cache_from_keys(keys, channels)
    pipe = plan_ds(q, channels, k, n)
    for seed in (1, 2):
        q.copy_(torch.randn(q.shape, generator=gen(seed), device=DEVICE))
        pipe.run(q, keys, values, labels)
        assert_top_values(pipe.indices, pipe.scores, k)
        assert rel_err(pipe.out, attention_over(q, keys, values, pipe.indices)) < BF16_TOL


def test_stages_compose_to_run():
    q, keys, values, channels = make(22)
    n, k = keys.shape[2], math.ceil(keys.shape[2] / 10)
    labels = gpu_index.label_cache_from_keys(keys, channels)
    pipe = plan_ds(q, channels, k, n)
    pipe.run(q, keys, values, labels)
    chosen = pipe.scores.float().gather(2, pipe.indices.long()).sort(2).values
    pipe.index(q, labels)
    pipe.index(q, labels)  # each index() starts its counts from zero
    assert int(pipe.topk.hist.sum()) == pipe.scores.numel()
    pipe.select()
    assert torch.equal(pipe.scores.float().gather(2, pipe.indices.long()).sort(2).values, chosen)
    assert rel_err(pipe.attend(q, keys, values), attention_over(q, keys, values, pipe.indices)) < BF16_TOL


def test_bad_input_is_refused():
    q, keys, values, channels = make(23, shape=(2, 8, 2, 64, 32, 4))
    labels = gpu_index.label_cache_from_keys(keys, channels)
    with pytest.raises(RuntimeError, match="plan"):
        gpu_index.DoubleSparsityDecode().run(q, keys, values, labels)
    with pytest.raises(ValueError, match="k must lie"):
        plan_ds(q, channels, 65, 64)
    with pytest.raises(ValueError, match="channels must be"):
        plan_ds(q, channels[:, None], 8, 64)
    with pytest.raises(ValueError, match="aggregate"):
        plan_ds(q, channels, 8, 64, aggregate="prob_sum")
    pipe = plan_ds(q, channels, 8, 64)
    with pytest.raises(ValueError, match="planned q"):
        pipe.run(q.float(), keys, values, labels)
    with pytest.raises(ValueError, match="do not match the plan"):
        pipe.run(q, keys, values, labels[:, :, :32])
    with pytest.raises(ValueError, match="planned caches"):
        pipe.run(q, keys[:, :, :32], values[:, :, :32], labels)
    with pytest.raises(ValueError, match="k <= context"):
        gpu_index.QuestDecode().plan(batch=2, num_q_heads=8, num_kv_heads=2, head_dim=32, context=64, k=0,
                                     device=DEVICE)  # fmt: skip


gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


@gpu
@pytest.mark.parametrize("indexer", ["double_sparsity", "quest"])
def test_no_host_sync_and_cuda_graph_replay(indexer):
    q, keys, values, channels = make(31)
    bsz, hq, hkv, n, d, _ = SHAPE
    k = math.ceil(n / 50)
    if indexer == "double_sparsity":
        state = (gpu_index.label_cache_from_keys(keys, channels),)
        pipe = plan_ds(q, channels, k, n)
    else:
        state = gpu_index.page_bounds_from_keys(keys, 16)
        pipe = gpu_index.QuestDecode()
        pipe.plan(batch=bsz, num_q_heads=hq, num_kv_heads=hkv, head_dim=d, context=n, k=k, device=DEVICE)
    step = lambda: pipe.run(q, keys, values, *state)
    step()  # compile outside the checks
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any device -> host wait raises
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for seed in (5, 6):
        q.copy_(torch.randn(q.shape, generator=gen(seed), device=DEVICE))
        pipe.out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        ref = attention_over(q, keys, values, pipe.indices, pipe.weights)
        assert rel_err(pipe.out, ref) < BF16_TOL
        chosen = pipe.indices if indexer == "double_sparsity" else pipe.page_indices
        assert_top_values(chosen, pipe.scores, pipe.topk.k)

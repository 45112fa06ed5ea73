"""vAttention's engine pipeline against the reference selector, and through the engine (Triton interpreter)."""

from __future__ import annotations

import pytest
import torch

from ctxsparse import Budget, VAttention
from ctxsparse.engine import Engine
from ctxsparse.engine.cache import CacheShape, PagedKVCache
from ctxsparse.engine.fast import method_problem, step_buffer_bytes
from ctxsparse.engine.vattention_gpu import VAttentionStep
from ctxsparse.gpu_index.launch import INTERPRETED
from ctxsparse.selectors import DoubleSparsity
from ctxsparse.selectors.base import SelectionContext

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
kernels = pytest.mark.skipif(not CUDA and not INTERPRETED, reason="needs CUDA or the Triton interpreter")
interpreted = pytest.mark.skipif(CUDA or not INTERPRETED, reason="CPU interpreter test")
cuda_only = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def _cache(lengths: list[int], cap: int = 128) -> PagedKVCache:
    shape = CacheShape(1, len(lengths), cap, 16, 2, 64, torch.bfloat16)
    cache = PagedKVCache(shape, DEVICE)
    gen = torch.Generator().manual_seed(7)
    cache.k.copy_(torch.randn(cache.k.shape, generator=gen))
    cache.v.copy_(torch.randn(cache.v.shape, generator=gen))
    cache.lengths[: len(lengths)] = torch.tensor(lengths, dtype=torch.int32)
    return cache


def _reference(selector: VAttention, cache: PagedKVCache, q: torch.Tensor, k: int, seed: int):
    """The selector's own select() over the same keys, every row's budget k, drawing from the same generator."""
    b, cap = q.shape[0], cache.shape.capacity
    keys = cache.rows(0)[0][:b].transpose(1, 2).float()  # [B, Hkv, cap, D]
    visible = torch.arange(cap, device=q.device).view(1, -1) <= cache.lengths[:b].view(-1, 1).long()
    ctx = SelectionContext(query=q.float().unsqueeze(2), keys=keys, visible=visible.view(b, 1, 1, cap), scale=0.125,
                           num_layers=1, static_k=k)  # fmt: skip
    torch.manual_seed(seed)
    return selector.select(ctx, torch.full((b, 1, 1), k, device=q.device))


def _pairs(tokens: torch.Tensor, weights: torch.Tensor) -> list[list[tuple[int, float]]]:
    """Per (row, head): the sorted (token, weight) pairs of the slots with a weight."""
    out = []
    for t_row, w_row in zip(tokens.reshape(-1, tokens.shape[-1]), weights.reshape(-1, weights.shape[-1]), strict=True):
        pairs = zip(t_row.tolist(), w_row.tolist(), strict=True)
        out.append(sorted((int(t), round(float(w), 4)) for t, w in pairs if w > 0))
    return out


@kernels
@pytest.mark.parametrize(("k", "epsilon"), [(40, 0.05), (40, 0.5), (24, 0.3)])
def test_pipeline_reads_the_reference_selectors_tokens_and_weights(k, epsilon):
    """Same keys, same budget, same generator state: the same sink/window, kept top-k, samples and weights."""
    lengths = [100, 61]
    cache = _cache(lengths)
    selector = VAttention(sink=4, window=8, min_samples=4, epsilon=epsilon)
    q = torch.randn(2, 4, 64, generator=torch.Generator().manual_seed(3)).bfloat16().to(DEVICE)
    step = VAttentionStep(selector, cache, 2, 4, k)
    step.prepare(cache.lengths[:2].long())
    torch.manual_seed(11)
    tokens, weights = step._select(0, q, 0.125)
    ref = _reference(selector, cache, q, k, seed=11)
    ref_weights = ref.weights if ref.weights is not None else torch.ones(ref.indices.shape, device=DEVICE)
    ref_weights = ref_weights * ref.valid_mask()
    assert _pairs(tokens, weights) == _pairs(ref.indices.squeeze(2), ref_weights.squeeze(2))
    assert int(step.last["draw"].sum()) > 0  # the residual was sampled, not only read


@kernels
def test_pipeline_reads_every_token_of_rows_within_the_budget():
    """A row that sees fewer tokens than k reads each exactly once with weight 1 (no samples)."""
    cache = _cache([30, 50])
    step = VAttentionStep(VAttention(sink=4, window=8), cache, 2, 4, 60)
    step.prepare(cache.lengths[:2].long())
    tokens, weights = step._select(0, torch.randn(2, 4, 64).bfloat16().to(DEVICE), 0.125)
    for row, pairs in enumerate(_pairs(tokens, weights)):
        assert pairs == [(t, 1.0) for t in range((31, 51)[row // 4])]


def test_pipeline_refuses_a_budget_with_no_room_past_sink_and_window():
    cache = PagedKVCache(CacheShape(1, 1, 64, 16, 2, 64, torch.bfloat16), torch.device("cpu"))
    with pytest.raises(ValueError, match="sink \\+ window"):
        VAttentionStep(VAttention(sink=4, window=8), cache, 1, 4, 12)


def test_method_problem_names_what_the_pipeline_takes():
    assert method_problem(VAttention()) is None
    assert "granularity='q_head'" in method_problem(VAttention(granularity="kv_head"))
    assert "top=None" in method_problem(VAttention(top=DoubleSparsity(channels=8)))


def test_buffer_bound_counts_every_query_head():
    shape = CacheShape(2, 4, 256, 16, 2, 64, torch.bfloat16)
    small = step_buffer_bytes(shape, VAttention(), Budget(sparsity=10), 100, num_q_heads=2)
    large = step_buffer_bytes(shape, VAttention(), Budget(sparsity=10), 100, num_q_heads=8)
    assert large - small == 4 * 6 * 256 * 32


@interpreted
def test_engine_runs_vattention_on_its_pipeline(model):
    """graphs=False takes the batched pipeline; at a budget covering every token it generates what dense does;
    where k leaves no room past sink and window it runs the sink + window step."""
    prompts = [torch.randint(5, 500, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in (40, 23)]
    out = {}
    for name, selector, budget in (("dense", None, None), ("vattention", VAttention(sink=4, window=8),
                                                           Budget(tokens=64))):  # fmt: skip
        with Engine(model, None, selector=selector, budget=budget, max_batch=2, max_len=64, graphs=False) as engine:
            result = engine.generate(input_ids=prompts, max_new_tokens=6)
        out[name] = result
    assert out["vattention"].mode == "eager" and "vattention pipeline" in out["vattention"].attention
    assert out["vattention"].token_ids == out["dense"].token_ids
    with Engine(model, None, selector=VAttention(sink=4, window=8), budget=Budget(tokens=10), max_batch=2,
                max_len=64, graphs=False) as engine:  # fmt: skip
        result = engine.generate(input_ids=prompts, max_new_tokens=2)
    assert "sink and window only" in result.attention


@cuda_only
def test_graph_steps_run_the_pipeline_without_a_host_sync():
    """On a GPU the engine captures vAttention's step in a CUDA graph; a replayed step never syncs, and a replay of
    the same input from the same state draws new samples (the graph advances the device generator)."""
    from ctxsparse.models import load_model

    model, _ = load_model("random:small-llama", device="cuda", dtype="bfloat16")
    rows = [torch.randint(5, 3900, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in (1500, 900)]
    with Engine(model, None, selector=VAttention(), budget=Budget(sparsity=10), max_batch=2, max_len=2048,
                graphs=True) as engine:  # fmt: skip
        result = engine.generate(input_ids=rows, max_new_tokens=4, stop_token_ids=[])
        assert result.mode == "graph" and "vattention pipeline" in result.attention
        fast = engine.fast
        fast.backend.before_step(fast.host_lengths)
        token = torch.zeros(2, dtype=torch.long, device="cuda")
        drawn = []
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        saved = engine.cache.lengths.clone()
        try:
            for _ in range(2):  # the same step twice, from the same lengths
                engine.cache.lengths.copy_(saved)
                fast.step_fn.run(token)
                drawn.append(fast.backend.last["tokens"].clone())
        finally:
            torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize()
        assert engine.cache.lengths[:2].tolist() == [n + 1 for n in fast.host_lengths]
        assert not torch.equal(drawn[0], drawn[1])

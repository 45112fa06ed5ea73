"""The engine on a CUDA GPU at full size (Llama-3.1-8B shape, bf16): graph replay equals eager steps, and a
replayed step never synchronises with the host."""

from __future__ import annotations

import pytest
import torch

from ctxsparse import Budget, DoubleSparsity, OracleTopK, Quest, SinkWindow
from ctxsparse.engine import Engine
from ctxsparse.engine.hook import attached

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

LENGTHS = (1500, 900)


@pytest.fixture(scope="module")
def model():
    from ctxsparse.bench.generate import random_calibration
    from ctxsparse.models import load_model

    model, _ = load_model("random:llama-3.1-8b", device="cuda", dtype="bfloat16")
    return model, random_calibration(model)


def _selector(name: str, calibration):
    return {
        "dense": None,
        "oracle_topk": OracleTopK(granularity="kv_head", aggregate="logit_max"),
        "double_sparsity": DoubleSparsity(
            channels=16, calibration=calibration, granularity="kv_head", aggregate="logit_mean"
        ),  # fmt: skip
        "quest": Quest(page_size=16, granularity="kv_head"),
        "sink_window": SinkWindow(sink=4),
    }[name]


def _rows() -> list[list[int]]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(100, 30000, (n,), generator=gen).tolist() for n in LENGTHS]


@pytest.mark.parametrize("name", ["sink_window", "oracle_topk", "double_sparsity", "quest", "dense"])
def test_graph_replay_equals_eager_steps(model, name):
    """One step replayed from the graph and the same step launched op by op, from the same state."""
    model, calibration = model
    budget = None if name == "dense" else Budget(sparsity=10)
    with Engine(model, None, selector=_selector(name, calibration), budget=budget, max_batch=2, max_len=2048,
                graphs=True) as engine:  # fmt: skip
        result = engine.generate(input_ids=_rows(), max_new_tokens=6, stop_token_ids=[])
        assert result.mode == "graph"
        print(f"{name}: {result.attention}, median step {result.median_step_ms:.2f} ms")
        fast = engine.fast
        print(f"{name}: one-GEMM projection groups {fast.fused_groups}, one-kernel rotary modules "
              f"{fast.rotary_modules}, one-kernel norms {fast.fast_norm_modules}")  # fmt: skip
        token = torch.tensor([row[-1] for row in result.token_ids], device="cuda")
        saved = engine.cache.lengths.clone()
        fast.backend.before_step(fast.host_lengths)
        replayed = fast.step_fn.run(token).float().clone()
        engine.cache.lengths.copy_(saved)
        fast.backend.before_step(fast.host_lengths)
        with fast.session(), attached(model, fast.attend):  # the same fused projections and norms as the graph
            eager = fast.step_fn.forward().float()
    # the same kernels on the same data; only a top-k may take another of the scores tied at the k-th value
    print(f"{name}: replay == eager bit for bit: {torch.equal(replayed, eager)}")
    tolerance = 1e-3 if name in ("dense", "sink_window") else 0.02
    assert (replayed - eager).abs().max() <= tolerance * eager.abs().max()


def _pin_flashinfer_choice(monkeypatch) -> None:
    """The first engine times FlashInfer's two decode configurations and keeps the faster; later engines take the
    same one (a timing near a tie may pick the other, whose bf16 rounding differs)."""
    from ctxsparse.engine.dense_gpu import FlashInferDenseStep

    chosen: dict[str, bool] = {}
    choose = FlashInferDenseStep._choose

    def pinned(self, visible):
        if "tensor_cores" in chosen:
            self.tensor_cores = chosen["tensor_cores"]
            return
        choose(self, visible)
        chosen["tensor_cores"] = self.tensor_cores

    monkeypatch.setattr(FlashInferDenseStep, "_choose", pinned)


def test_dense_greedy_tokens_equal_with_and_without_graphs(model, monkeypatch):
    """Graph replay against the same batched kernels launched op by op (graphs=False), 12 greedy steps."""
    model, _ = model
    _pin_flashinfer_choice(monkeypatch)
    tokens, modes = [], []
    for graphs in (True, False):
        with Engine(model, None, max_batch=2, max_len=2048, graphs=graphs) as engine:
            result = engine.generate(input_ids=_rows(), max_new_tokens=12, stop_token_ids=[])
        tokens.append(result.token_ids)
        modes.append(result.mode)
    assert modes == ["graph", "eager"]
    assert tokens[0] == tokens[1]


def test_dense_step_logits_near_the_reference_path(model):
    """One replayed dense step against the engine's reference path (row by row, SDPA) from the same cache: other
    kernels, so logits agree within bf16 rounding, not bit for bit (tokens may flip at near ties)."""
    model, _ = model
    with Engine(model, None, max_batch=2, max_len=2048, graphs=True) as engine:
        result = engine.generate(input_ids=_rows(), max_new_tokens=4, stop_token_ids=[])
        fast = engine.fast
        token = torch.tensor([row[-1] for row in result.token_ids], device="cuda")
        saved = engine.cache.lengths.clone()
        fast.backend.before_step(fast.host_lengths)
        replayed = fast.step_fn.run(token).float().clone()
        engine.cache.lengths.copy_(saved)
        with attached(model, engine._dispatch), torch.no_grad():
            reference = engine._forward_rows([0, 1], fast.host_lengths, token.view(-1, 1).tolist(), sparse=False)
        reference = reference.float()
    diff = (replayed - reference).abs().max().item()
    scale = reference.abs().max().item()
    relative = ((replayed - reference).norm() / reference.norm()).item()
    same_top = (replayed.argmax(-1) == reference.argmax(-1)).tolist()
    print(
        f"dense step vs reference path: relative L2 {relative:.4f}; max |diff| {diff:.4f} of max |logit| "
        f"{scale:.3f}; same argmax {same_top}"
    )
    # Both sides are bf16 with their own summation orders. On the CPU (benchmarks/step_error.py, NOTES-engine.md)
    # every piece of the batched step matches the reference path to 3e-7 in float32, while in bf16 the two drift
    # apart with depth on random weights: 1.5e-2 at 4 layers to 4.8e-2 at 32 layers of this shape, about what the
    # bf16 reference path's own distance from float32 is. So the gate is that drift with headroom, and the same
    # greedy token (an element-wise maximum over a 128K vocabulary is dominated by outliers: printed, not gated).
    assert relative <= 8e-2
    assert all(same_top)


@pytest.mark.parametrize("name", ["double_sparsity", "dense"])
def test_a_replayed_step_does_not_sync(model, name):
    model, calibration = model
    budget = None if name == "dense" else Budget(sparsity=10)
    with Engine(model, None, selector=_selector(name, calibration), budget=budget, max_batch=2, max_len=2048,
                graphs=True) as engine:  # fmt: skip
        engine.generate(input_ids=_rows(), max_new_tokens=4, stop_token_ids=[])
        fast = engine.fast
        fast.backend.before_step(fast.host_lengths)  # host planning happens before the step
        token = torch.zeros(2, dtype=torch.long, device="cuda")
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(2):
                token = fast.step_fn.run(token).argmax(-1)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize()
        assert engine.cache.lengths[:2].tolist() == [n + 2 for n in fast.host_lengths]

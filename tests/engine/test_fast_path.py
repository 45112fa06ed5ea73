"""The batched kernel path (graphs=False) under Triton's interpreter against the reference row path; indexer state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ctxsparse import Budget, DoubleSparsity, OracleTopK, Quest, SinkWindow
from ctxsparse.bench.generate import random_calibration
from ctxsparse.engine import Engine
from ctxsparse.engine.cache import CacheShape, PagedKVCache
from ctxsparse.engine.indexers import LabelIndexer, PageIndexer
from ctxsparse.gpu_index.launch import INTERPRETED
from ctxsparse.selectors.calibration import Calibration

interpreted = pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter test")


def _every_token(model):
    """Selectors with a GPU pipeline; at a budget above every row's length each must read every token."""
    cal = random_calibration(model)
    return {
        "oracle_topk": OracleTopK(granularity="kv_head", aggregate="logit_max"),
        "double_sparsity": DoubleSparsity(channels=8, calibration=cal, granularity="kv_head", aggregate="logit_mean"),
        "quest": Quest(page_size=4, granularity="kv_head"),
    }


@interpreted
@pytest.mark.parametrize(
    ("name", "tokens_read"),
    [("dense", 12), ("sink_window", 12), ("oracle_topk", 40), ("double_sparsity", 40), ("quest", 40)],
)
def test_kernel_path_equals_reference_path(model, name, tokens_read):
    """The batched kernels (graphs=False) give the reference path's tokens; the sparse methods at a budget above
    every row's length read every token (their top-k must skip the slots past each row's length)."""
    selector = {"dense": None, "sink_window": SinkWindow(sink=4)}.get(name) or _every_token(model).get(name)
    gen = torch.Generator().manual_seed(1)
    rows = [torch.randint(5, 500, (n,), generator=gen).tolist() for n in (23, 14)]
    tokens = {}
    for graphs in (False, "auto"):
        with Engine(model, None, selector=selector, budget=Budget(tokens=tokens_read), max_batch=2, max_len=32,
                    graphs=graphs) as engine:  # fmt: skip
            result = engine.generate(input_ids=rows, max_new_tokens=4, stop_token_ids=[])
            if result.mode == "eager":  # q/k/v and gate/up as one GEMM each; rotary and norms in one kernel each
                fast = engine.fast
                assert (fast.fused_groups, fast.rotary_modules, fast.fast_norm_modules) == (4, 4, 5)
        tokens[result.mode] = result.token_ids
    assert tokens["eager"] == tokens["rows"]


def test_page_and_label_state_follow_the_written_keys():
    """Quest's page bounds and Double Sparsity's labels, built from a prefilled cache and then updated in place
    step by step (twice per step: updates are idempotent), equal what the keys say."""
    shape = CacheShape(2, 2, 40, 8, 2, 64, torch.bfloat16)
    cache = PagedKVCache(shape, torch.device("cpu"))
    cache.k.normal_(generator=torch.Generator().manual_seed(0))
    lengths = [21, 9]
    cal = random_calibration_for(shape)
    pages = PageIndexer(Quest(page_size=8, granularity="kv_head"), cache, 2, 4)
    labels = LabelIndexer(DoubleSparsity(channels=4, calibration=cal, granularity="kv_head", aggregate="logit_max"),
                          cache, 2, 4, "test")  # fmt: skip
    pages.adopt(lengths)
    labels.adopt(lengths)
    cache.lengths[:2] = torch.tensor(lengths, dtype=torch.int32)
    for _ in range(5):
        slots = cache.lengths[:2].long()
        pages.prepare(slots)
        labels.prepare(slots)
        for layer in range(2):
            new_keys = cache.rows(layer)[0][torch.arange(2), slots]  # [B, Hkv, D]: what the step wrote
            for _ in range(2):
                pages.update(layer, new_keys)
                labels.update(layer, new_keys)
        cache.lengths[:2] += 1
    for b, n in enumerate(cache.lengths[:2].tolist()):
        keys = cache.rows(1)[0][b, :n].transpose(0, 1).float()  # [Hkv, n, D]: every written slot
        full = -(-n // 8)
        padded = F.pad(keys, (0, 0, 0, full * 8 - n), value=float("inf")).unflatten(1, (full, 8))
        assert torch.equal(pages.lo[1, b, :, :full].float(), padded.amin(2))
        chans = labels.channels[1].long()
        want = keys.gather(-1, chans.unsqueeze(1).expand(-1, n, -1))
        assert torch.equal(labels.labels[1, b, :, :n].float(), want)


def random_calibration_for(shape: CacheShape) -> Calibration:
    gen = torch.Generator().manual_seed(1)
    chans = [[torch.randperm(64, generator=gen).tolist() for _ in range(2)] for _ in range(2)]
    return Calibration("test", shape.num_layers, shape.num_kv_heads, 64, chans, tokens=0)


@interpreted
def test_compiled_modules_give_the_same_tokens_and_are_restored(model, monkeypatch):
    """compile=True routes MLPs and norms through one shared torch.compile function (dynamo's eager backend here:
    the plumbing, not Inductor) during decode steps only."""
    from ctxsparse.engine import compiled

    monkeypatch.setattr(compiled, "BACKEND", "eager")
    compiled.compiled_call.cache_clear()
    torch._dynamo.utils.counters.clear()
    rows = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    tokens = []
    for compile_modules in (False, True):
        with Engine(model, None, max_batch=2, max_len=16, graphs=False, compile=compile_modules) as engine:
            tokens.append(engine.generate(input_ids=rows, max_new_tokens=3, stop_token_ids=[]).token_ids)
    assert tokens[0] == tokens[1]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2  # one MLP graph, one norm graph, all layers
    assert all("forward" not in m.__dict__ for m in compiled.compiled_modules(model))
    assert len(compiled.compiled_modules(model)) == 2 * 3 + 1  # per layer an MLP and two norms, the final norm
    compiled.compiled_call.cache_clear()

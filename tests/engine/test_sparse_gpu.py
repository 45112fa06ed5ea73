"""The sparse step without weights (fewer kernels) when every row sees at least k tokens (Triton interpreter)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig

from ctxsparse import DoubleSparsity, OracleTopK, Quest
from ctxsparse.bench.generate import random_calibration
from ctxsparse.engine.cache import CacheShape, PagedKVCache
from ctxsparse.engine.indexers import LabelIndexer, OracleIndexer, PageIndexer
from ctxsparse.engine.sparse_gpu import SparseStep
from ctxsparse.gpu_index.launch import INTERPRETED

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter test")


@pytest.mark.parametrize("method", ["oracle_topk", "double_sparsity", "quest"])
def test_step_without_weights_equals_the_weighted_step(method):
    """When every row sees at least k tokens the unweighted step (fewer kernels) attends exactly as the weighted."""
    shape = CacheShape(1, 2, 48, 16, 2, 64, torch.bfloat16)
    cache = PagedKVCache(shape, torch.device("cpu"))
    gen = torch.Generator().manual_seed(2)
    cache.k.normal_(generator=gen)
    cache.v.normal_(generator=gen)
    lengths = [30, 17]
    cache.lengths[:2] = torch.tensor(lengths, dtype=torch.int32)
    q = torch.randn(2, 4, 64, generator=gen).bfloat16()
    outs = []
    for weighted in (True, False):
        if method == "quest":
            indexer = PageIndexer(Quest(page_size=4, granularity="kv_head"), cache, 2, 4)
        elif method == "oracle_topk":
            indexer = OracleIndexer(OracleTopK(granularity="kv_head", aggregate="logit_max"), cache, 2, 4)
        else:
            cal = random_calibration(_config_model(shape))
            ds = DoubleSparsity(channels=8, calibration=cal, granularity="kv_head", aggregate="logit_mean")
            indexer = LabelIndexer(ds, cache, 2, 4, cal.model_key)
        step = SparseStep(indexer, cache, 2, 4, 12, method, weighted=weighted)
        assert step.weighted == (weighted or method == "quest")
        step.adopt(lengths)
        slots = cache.lengths[:2].long()
        step.prepare(slots)
        new_keys = cache.rows(0)[0][torch.arange(2), slots]
        outs.append(step.attend(0, q, new_keys, 0.125).clone())
    assert torch.equal(outs[0], outs[1])


def _config_model(shape: CacheShape):
    """A stand-in with the config fields random_calibration reads."""
    cfg = AutoConfig.for_model("llama", hidden_size=128, num_hidden_layers=shape.num_layers, num_attention_heads=4,
                               num_key_value_heads=shape.num_kv_heads, head_dim=shape.head_dim)  # fmt: skip

    class _Stub(torch.nn.Module):
        config = cfg

    return _Stub()

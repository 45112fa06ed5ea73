"""The sparse step's parts under Triton's interpreter: length masking inside the score kernels, the step without
weights when every row sees at least k tokens, and engine buffers usable from either autograd mode."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ctxsparse import DoubleSparsity, OracleTopK, Quest
from ctxsparse.bench.generate import random_calibration
from ctxsparse.engine import Engine
from ctxsparse.engine.cache import CacheShape, PagedKVCache
from ctxsparse.engine.indexers import LabelIndexer, OracleIndexer, PageIndexer
from ctxsparse.engine.sparse_gpu import SparseStep
from ctxsparse.gpu_index.key_score import launch_key_scores
from ctxsparse.gpu_index.label_score import launch_label_scores
from ctxsparse.gpu_index.launch import INTERPRETED
from ctxsparse.gpu_index.page_score import launch_page_scores

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter test")


@pytest.fixture(scope="module")
def model():
    cfg = AutoConfig.for_model("llama", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=64, intermediate_size=256, vocab_size=512,
                               max_position_embeddings=1024)  # fmt: skip
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).eval()


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


@pytest.mark.parametrize("made_in_inference_mode", [True, False])
def test_engine_buffers_take_calls_from_either_autograd_mode(model, made_in_inference_mode):
    """An engine made and run inside torch.inference_mode, then stepped outside it (and the reverse): the
    cache, step inputs and indexer state are plain tensors, updated in place from either mode."""
    cal = random_calibration(model)
    selector = DoubleSparsity(channels=8, calibration=cal, granularity="kv_head", aggregate="logit_mean")
    rows = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [14, 15, 16, 17, 18, 19, 20]]
    first, second = (torch.inference_mode(), torch.enable_grad()) if made_in_inference_mode else (
        torch.enable_grad(), torch.inference_mode())  # fmt: skip
    from ctxsparse import Budget

    with first:
        engine = Engine(model, None, selector=selector, budget=Budget(tokens=4), max_batch=2, max_len=32,
                        graphs=False)  # fmt: skip
        result = engine.generate(input_ids=rows, max_new_tokens=3, stop_token_ids=[])
    assert result.mode == "eager"
    with second:
        fast = engine.fast
        fast.backend.before_step(fast.host_lengths)
        logits = fast.step_fn.run(torch.tensor([row[-1] for row in result.token_ids]))
        again = engine.generate(input_ids=rows, max_new_tokens=3, stop_token_ids=[])
    assert logits.shape == (2, 512) and not logits.requires_grad
    assert again.token_ids == result.token_ids
    engine.close()

"""The batched kernel path (graphs=False), run by Triton's interpreter on CPU, against the reference row path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM

from ctxsparse import Budget, Quest, SinkWindow
from ctxsparse.engine import Engine
from ctxsparse.gpu_index.launch import INTERPRETED

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter test")


@pytest.fixture(scope="module")
def model():
    """A two-layer bf16 Llama with head_dim 64 (a size the decode kernel takes)."""
    cfg = AutoConfig.for_model("llama", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=64, intermediate_size=256, vocab_size=512,
                               max_position_embeddings=1024)  # fmt: skip
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).eval()


@pytest.mark.parametrize(
    "selector",
    [None, SinkWindow(sink=4)],
    ids=["dense", "sink_window"],
)
def test_kernel_path_equals_reference_path(model, selector):
    gen = torch.Generator().manual_seed(1)
    rows = [torch.randint(5, 500, (n,), generator=gen).tolist() for n in (37, 21)]
    tokens = {}
    for graphs in (False, "auto"):
        with Engine(model, None, selector=selector, budget=Budget(tokens=12), max_batch=2, max_len=48,
                    graphs=graphs) as engine:  # fmt: skip
            result = engine.generate(input_ids=rows, max_new_tokens=5, stop_token_ids=[])
        tokens[result.mode] = result.token_ids
    assert tokens["eager"] == tokens["rows"]


def test_quest_kernel_path_keeps_page_bounds_of_the_written_keys(model):
    """Quest reads whole pages (the reference cuts the last one), so compare its state and its full-budget output."""
    gen = torch.Generator().manual_seed(2)
    rows = [torch.randint(5, 500, (n,), generator=gen).tolist() for n in (29, 18)]
    quest = Quest(page_size=8, granularity="kv_head")
    with Engine(model, None, selector=quest, budget=Budget(sparsity=1), max_batch=2, max_len=48,
                graphs=False) as engine:  # fmt: skip
        result = engine.generate(input_ids=rows, max_new_tokens=4, stop_token_ids=[])
        indexer = engine.fast.backend.indexer
        for b, n in enumerate(engine.fast.host_lengths):
            keys = engine.cache.rows(1)[0][b, :n].float()  # [n, Hkv, D]
            pages = -(-n // 8)
            lo = F.pad(keys.transpose(0, 1), (0, 0, 0, pages * 8 - n), value=float("inf"))
            want = lo.unflatten(1, (pages, 8)).amin(2)
            assert torch.equal(indexer.lo[1, b, :, :pages].float(), want)
    with Engine(model, None, max_batch=2, max_len=48) as engine:
        dense = engine.generate(input_ids=rows, max_new_tokens=4, stop_token_ids=[])
    assert result.mode == "eager" and result.token_ids == dense.token_ids

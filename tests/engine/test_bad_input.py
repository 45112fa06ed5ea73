"""Every bad input of the engine gets a clear error before any work; a failing step leaves the model usable."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from ctxsparse import Budget, LSHSampling, OracleTopK
from ctxsparse.engine import Engine
from ctxsparse.engine.fast import method_problem
from ctxsparse.models import load_model
from ctxsparse.selectors.base import Selector


@pytest.fixture(scope="module")
def llama():
    return load_model("random:tiny-llama")


def test_unsupported_family_names_the_supported_ones():
    model, tok = load_model("random:tiny-gemma")
    with pytest.raises(TypeError, match="llama, mistral, qwen2, qwen3"):
        Engine(model, tok)


def test_limits_are_checked_before_any_work(llama):
    model, tok = llama
    with pytest.raises(ValueError, match="exceeds the model's 8192 positions"):
        Engine(model, tok, max_len=10_000)
    with Engine(model, tok, max_batch=2, max_len=16) as engine:
        with pytest.raises(ValueError, match="max_batch=2"):
            engine.generate(["a", "b", "c"], max_new_tokens=2)
        with pytest.raises(ValueError, match="max_len=16: raise max_len"):
            engine.generate(["a b c d e f g h i j k l"], max_new_tokens=8)
        with pytest.raises(ValueError, match="more than the model's 8192 positions"):
            engine.generate(input_ids=[[5] * 9000], max_new_tokens=1)
        with pytest.raises(ValueError, match="empty"):
            engine.generate(input_ids=[[]], max_new_tokens=1)
        with pytest.raises(ValueError, match="one questions|one per prompt"):
            engine.generate(["a"], questions=["b", "c"])
        assert int(engine.cache.lengths.sum()) == 0


def test_a_cache_that_does_not_fit_is_refused_before_allocation(llama):
    model, tok = llama
    with pytest.raises(MemoryError, match=r"GB .* Lower max_len or max_batch"):
        Engine(model, tok, max_batch=10**7, max_len=8192)


def test_bad_settings(llama):
    model, tok = llama
    with pytest.raises(ValueError, match="needs a budget"):
        Engine(model, tok, selector="oracle_topk")
    with pytest.raises(ValueError, match="phase"):
        Engine(model, tok, phase="answer")
    with pytest.raises(ValueError, match="graphs"):
        Engine(model, tok, graphs="always")
    with pytest.raises(ValueError, match="temperature"):
        Engine(model, tok, max_len=32).generate(["a"], temperature=-1)


def test_graphs_true_needs_a_gpu_pipeline(llama):
    model, tok = llama
    with pytest.raises(ValueError, match="graphs=True"):
        Engine(model, tok, graphs=True)
    assert "no GPU pipeline" in method_problem(LSHSampling())
    assert "granularity='kv_head'" in method_problem(OracleTopK())
    assert method_problem(OracleTopK(granularity="kv_head", aggregate="logit_max")) is None
    auto = Engine(model, tok, selector=LSHSampling(), budget=Budget(sparsity=2), max_len=32)
    result = auto.generate(["a b c"], max_new_tokens=3)
    assert result.mode == "rows" and "eager reference path" in result.notes[0]


@dataclass
class Exploding(Selector):
    """Fails on its first call, as a bug in a selector would."""

    name = "exploding"

    def select(self, ctx, k, exclude=None):
        raise RuntimeError("boom")


def test_an_exception_mid_step_leaves_the_model_usable(llama):
    model, tok = llama
    ids = torch.tensor([tok("hello there friend")["input_ids"]])
    before = model(input_ids=ids).logits
    impl = model.config._attn_implementation
    engine = Engine(model, tok, selector=Exploding(), budget=Budget(sparsity=2), max_len=32)
    with pytest.raises(RuntimeError, match="boom"):
        engine.generate(input_ids=ids, max_new_tokens=4)
    assert model.config._attn_implementation == impl
    assert torch.equal(model(input_ids=ids).logits, before)
    engine.close()
    assert engine.cache.k.numel() == 0


def test_dense_tensor_cores_takes_none_true_or_false():
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("llama", hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=16, intermediate_size=128, vocab_size=128)  # fmt: skip
    model = AutoModelForCausalLM.from_config(cfg).eval()
    with pytest.raises(ValueError, match="dense_tensor_cores must be None"):
        Engine(model, None, dense_tensor_cores="on")

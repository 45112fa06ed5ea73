"""The transformers integration: exactness per model family, padding, caches, phases, restoring, bad input."""

import pytest
import torch
from transformers import LlamaForCausalLM

from ctxsparse import Budget, OracleTopK, SinkWindow
from ctxsparse.hf import sparse_decoding
from ctxsparse.models import load_model

FAMILIES = ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mistral", "tiny-gemma"]


@pytest.fixture(scope="module")
def tiny():
    return load_model("random:tiny-llama")


def _ids(n: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randint(5, 900, (batch, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("granularity", ["q_head", "kv_head"])
def test_full_budget_matches_dense_for_each_family(family, granularity):
    model, _ = load_model(f"random:{family}")
    ids = _ids(24)
    dense = model(ids).logits
    with sparse_decoding(model, OracleTopK(granularity=granularity), Budget(sparsity=1)) as session:
        sparse = model(ids).logits
    torch.testing.assert_close(sparse, dense, atol=1e-4, rtol=1e-4)
    assert session.trace.sparse_calls == model.config.num_hidden_layers
    assert model.config._attn_implementation != "ctxsparse"


def test_sparsity_changes_outputs_and_trace_reports_density(tiny):
    model, _ = tiny
    ids = _ids(64)
    dense = model(ids).logits
    with sparse_decoding(model, "oracle_topk", Budget(sparsity=8)) as session:
        sparse = model(ids).logits
    assert not torch.allclose(sparse, dense, atol=1e-4)
    summary = session.trace.summary()
    assert 0.12 < summary["density"] < 0.3  # causal rows: k = ceil(n/8) of n visible
    assert 0 < summary["mass_recall"] < 1 and summary["output_error"] > 0


def test_phase_decode_prefills_dense_then_goes_sparse(tiny):
    model, _ = tiny
    ids = _ids(40)
    with sparse_decoding(model, "oracle_topk", Budget(sparsity=10), phase="decode") as session:
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
    layers = model.config.num_hidden_layers
    assert session.trace.sparse_calls == 3 * layers  # 4 new tokens: the first comes from the dense prefill


def test_dense_block_in_question_phase(tiny):
    model, _ = tiny
    with sparse_decoding(model, "oracle_topk", Budget(sparsity=10)) as session:
        with session.dense():
            model(_ids(30))
        assert session.trace.sparse_calls == 0
        model(_ids(5))
    assert session.trace.sparse_calls == model.config.num_hidden_layers


def test_left_padding_never_selected_batch_equals_single(tiny):
    model, tok = tiny
    long, short = _ids(48, seed=1), _ids(36, seed=2)
    batch = torch.full((2, 48), tok.pad_token_id)
    batch[0], batch[1, 12:] = long[0], short[0]
    mask = torch.ones_like(batch)
    mask[1, :12] = 0
    kwargs = dict(max_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True)
    with sparse_decoding(model, OracleTopK(), Budget(sparsity=4), phase="decode"):
        both = model.generate(batch, attention_mask=mask, **kwargs)
    with sparse_decoding(model, OracleTopK(), Budget(sparsity=4), phase="decode"):
        alone = model.generate(short, attention_mask=torch.ones_like(short), **kwargs)
    for step_both, step_alone in zip(both.scores, alone.scores, strict=True):
        torch.testing.assert_close(step_both[1], step_alone[0], atol=1e-4, rtol=1e-4)


def test_static_cache_matches_dynamic(tiny):
    model, _ = tiny
    ids = _ids(40, seed=3)
    outs = []
    for cache in ("dynamic", "static"):
        with sparse_decoding(model, SinkWindow(4, None), Budget(sparsity=5), phase="decode") as session:
            outs.append(
                model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=5,
                    do_sample=False,
                    cache_implementation=cache,
                    output_scores=True,
                    return_dict_in_generate=True,
                )
            )
        assert session.trace.sparse_calls > 0
    for a, b in zip(outs[0].scores, outs[1].scores, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_restored_on_exception(tiny):
    model, _ = tiny
    before = model.config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"):
        with sparse_decoding(model, "oracle_topk", Budget(sparsity=2)):
            assert model.config._attn_implementation == "ctxsparse"
            raise RuntimeError("boom")
    assert model.config._attn_implementation == before
    assert not any(hasattr(m, "_ctxsparse_session") for m in model.modules())


def test_nan_queries_refused_and_restored():
    model, _ = load_model("random:tiny-llama")
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        with sparse_decoding(model, "oracle_topk", Budget(sparsity=2)):
            model(_ids(8))
    assert model.config._attn_implementation != "ctxsparse"


def test_unsupported_model_refused():
    class Legacy(LlamaForCausalLM):
        _supports_attention_backend = False

    model, _ = load_model("random:tiny-llama")
    legacy = Legacy(model.config)
    with pytest.raises(TypeError, match="AttentionInterface"):
        sparse_decoding(legacy, "oracle_topk", Budget(sparsity=2))


def test_bad_arguments(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="phase"):
        sparse_decoding(model, "oracle_topk", Budget(sparsity=2), phase="prefill")
    with pytest.raises(TypeError, match="Budget"):
        sparse_decoding(model, "oracle_topk", 10)
    with pytest.raises(ValueError, match="Known selectors"):
        sparse_decoding(model, "nope", Budget(sparsity=2))

import pytest
import torch

from ctxsparse import Budget
from ctxsparse.generation import chat_parts, decode, generate, prefill, teacher_forced
from ctxsparse.models import load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model("random:tiny-llama")


CONTEXT = "alpha beta gamma delta epsilon zeta eta theta " * 30


def test_prefill_is_reusable_and_dense_matches_full_budget(tiny):
    model, tok = tiny
    pre = prefill(model, tok, CONTEXT)
    before = pre.cache.get_seq_length()
    dense = decode(pre, "what comes after beta?", "dense", Budget(sparsity=1), max_new_tokens=6)
    full = decode(pre, "what comes after beta?", "oracle_topk", Budget(sparsity=1), max_new_tokens=6)
    assert pre.cache.get_seq_length() == before  # decode worked on a copy
    assert full.token_ids == dense.token_ids
    s = full.trace.summary()
    assert s["density"] == pytest.approx(1.0) and s["kl"] < 1e-6 and s["top1_agreement"] == 1.0
    assert dense.trace.summary()["density"] is None  # dense runs plain attention, nothing to trace


def test_sparse_decode_traces_every_step(tiny):
    model, tok = tiny
    res = generate(
        model, tok, context=CONTEXT, question="q?", selector="oracle_topk", budget=Budget(sparsity=20), max_new_tokens=5
    )
    s = res.trace.summary()
    assert len(res.token_ids) <= 5 and isinstance(res.text, str)
    assert s["density"] < 0.1 and 0 < s["mass_recall"] <= 1
    # Question rows plus one row per fed generated token.
    assert s["steps"] == len(res.question_ids) + len(res.token_ids) - 1
    assert res.prompt_tokens > 300


def test_phase_decode_keeps_question_dense(tiny):
    model, tok = tiny
    pre = prefill(model, tok, CONTEXT)
    res = decode(pre, "q?", "oracle_topk", Budget(sparsity=20), max_new_tokens=4, phase="decode")
    assert res.trace.summary()["steps"] == len(res.token_ids) - 1


def test_teacher_forced_zero_kl_at_full_budget(tiny):
    model, tok = tiny
    ids = torch.tensor([tok(CONTEXT)["input_ids"]])
    full = teacher_forced(model, ids, 100, "oracle_topk", Budget(sparsity=1))
    assert full.kl.shape == (ids.shape[1] - 100,) and float(full.kl.max()) < 1e-6 and bool(full.agreement.all())
    sparse = teacher_forced(model, ids, 100, "sink_window:sink=2,window=4", Budget(sparsity=50))
    assert float(sparse.kl.mean()) > 0


def test_chat_parts_and_bad_input(tiny):
    model, tok = tiny
    before, after = chat_parts(tok)
    assert "user" in before and after
    with pytest.raises(ValueError, match="context is empty"):
        prefill(model, tok, "", chat=False)
    pre = prefill(model, tok, CONTEXT, chat=False)
    with pytest.raises(ValueError, match="question is empty"):
        decode(pre, "", "oracle_topk", Budget(sparsity=2))
    with pytest.raises(ValueError, match="max_new_tokens"):
        decode(pre, "x", "oracle_topk", Budget(sparsity=2), max_new_tokens=0)
    with pytest.raises(ValueError, match="sparse_from"):
        teacher_forced(model, torch.tensor([[1, 2, 3]]), 3, "oracle_topk", Budget(sparsity=2))

"""Engine.generate on CPU (the reference row path): equal to model.generate and to ctxsparse.generation.decode."""

from __future__ import annotations

import pytest
import torch

from ctxsparse import Budget, DoubleSparsity, OracleTopK, Quest, SinkWindow
from ctxsparse.engine import Engine
from ctxsparse.generation import decode, generate, prefill
from ctxsparse.models import load_model
from ctxsparse.selectors.calibration import Calibration

FAMILIES = ("tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mistral")
PROMPTS = ["The quick brown fox jumps over the lazy dog near the river bank", "short one", "a b c d e"]


@pytest.fixture(scope="module")
def llama():
    return load_model("random:tiny-llama")


def _hf_greedy(model, tokenizer, rows: list[list[int]], steps: int) -> list[list[int]]:
    """model.generate on a left-padded batch, cut after the first stop token like the engine."""
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps, do_sample=False)[:, width:]
    stop = {tokenizer.eos_token_id}
    cut = []
    for row in out.tolist():
        end = next((i + 1 for i, t in enumerate(row) if t in stop), len(row))
        cut.append(row[:end])
    return cut


@pytest.mark.parametrize("family", FAMILIES)
def test_dense_greedy_equals_model_generate_on_a_ragged_batch(family):
    model, tok = load_model(f"random:{family}")
    rows = [tok(p)["input_ids"] for p in PROMPTS[:2]]
    with Engine(model, tok, max_batch=2, max_len=64, page_size=8) as engine:
        result = engine.generate(input_ids=rows, max_new_tokens=32)
    assert result.mode == "rows" and result.notes
    assert result.token_ids == _hf_greedy(model, tok, rows, 32)
    assert len(result.step_ms) == max(map(len, result.token_ids)) - 1
    assert model.config._attn_implementation != "ctxsparse_engine"


def test_padded_input_ids_equal_texts(llama):
    model, tok = llama
    rows = [tok(p)["input_ids"] for p in PROMPTS[:2]]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    with Engine(model, tok, max_batch=2, max_len=64) as engine:
        padded = engine.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8)
        texts = engine.generate(PROMPTS[:2], max_new_tokens=8)
    assert padded.token_ids == texts.token_ids and padded.texts == texts.texts


def _calibration(model) -> Calibration:
    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    chans = [[torch.randperm(16, generator=gen).tolist() for _ in range(cfg.num_key_value_heads)] for _ in range(2)]
    return Calibration("random:tiny-llama", cfg.num_hidden_layers, cfg.num_key_value_heads, 16, chans, tokens=0)


@pytest.mark.parametrize(
    ("make", "phase"),
    [
        (lambda m: OracleTopK(), "question"),
        (lambda m: OracleTopK(granularity="kv_head"), "decode"),
        (lambda m: SinkWindow(sink=2), "question"),
        (lambda m: Quest(page_size=4), "question"),
        (lambda m: DoubleSparsity(channels=4, calibration=_calibration(m)), "decode"),
    ],
)
def test_sparse_tokens_equal_generation_decode(llama, make, phase):
    model, tok = llama
    context = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma " * 2
    question = "what came after gamma?"
    budget = Budget(sparsity=4)
    pre = prefill(model, tok, context, chat=False)
    want = decode(pre, question, make(model), budget, max_new_tokens=12, phase=phase, trace=False)
    with Engine(model, tok, selector=make(model), budget=budget, max_len=160, phase=phase) as engine:
        got = engine.generate([context], questions=[question], max_new_tokens=12)
    assert got.token_ids[0] == want.token_ids
    assert got.texts[0] == want.text


def test_generation_generate_on_the_engine(llama):
    model, tok = llama
    args = dict(context="one two three four five six seven", question="next?", selector="oracle_topk",
                budget=Budget(sparsity=2), max_new_tokens=6, chat=False, trace=False)  # fmt: skip
    assert generate(model, tok, engine=True, **args).token_ids == generate(model, tok, **args).token_ids


def test_sampling_is_seeded_and_top_p_tiny_is_greedy(llama):
    model, tok = llama
    with Engine(model, tok, max_batch=2, max_len=64) as engine:
        greedy = engine.generate(PROMPTS[:2], max_new_tokens=10, stop_token_ids=[])
        a = engine.generate(PROMPTS[:2], max_new_tokens=10, temperature=1.5, seed=3, stop_token_ids=[])
        b = engine.generate(PROMPTS[:2], max_new_tokens=10, temperature=1.5, seed=3, stop_token_ids=[])
        nucleus = engine.generate(PROMPTS[:2], max_new_tokens=10, temperature=1.0, top_p=1e-6, seed=1,
                                  stop_token_ids=[])  # fmt: skip
    assert a.token_ids == b.token_ids
    assert a.token_ids != greedy.token_ids
    assert nucleus.token_ids == greedy.token_ids


def test_stop_tokens_end_a_row(llama):
    model, tok = llama
    with Engine(model, tok, max_batch=2, max_len=64) as engine:
        free = engine.generate(PROMPTS[:2], max_new_tokens=12, stop_token_ids=[])
        stop = free.token_ids[0][4]
        cut = engine.generate(PROMPTS[:2], max_new_tokens=12, stop_token_ids=[stop])
    assert cut.token_ids[0] == free.token_ids[0][: free.token_ids[0].index(stop) + 1]
    assert cut.texts[0] == tok.decode(cut.token_ids[0][:-1], skip_special_tokens=True).strip()


def test_decode_from_a_filled_cache_continues_like_generate(llama):
    model, tok = llama
    rows = [tok(p)["input_ids"] for p in PROMPTS[:2]]
    with Engine(model, tok, max_batch=2, max_len=64) as engine:
        full = engine.generate(input_ids=rows, max_new_tokens=8, stop_token_ids=[])
        again = engine.decode_from_cache([len(r) for r in rows], [t[0] for t in full.token_ids], max_new_tokens=8,
                                         stop_token_ids=[])  # fmt: skip
    assert again.token_ids == full.token_ids

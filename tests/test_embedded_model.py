"""The real embedded model (SmolLM2-135M-Instruct from its GGUF) answers a ~2K-token passkey prompt."""

import pytest

from ctxsparse import Budget
from ctxsparse.generation import decode, prefill
from ctxsparse.passkey import passkey_prompt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded():
    from ctxsparse.models import embedded_gguf_path, load_model

    try:
        embedded_gguf_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    return load_model("smollm2-135m")


def test_embedded_shape(embedded):
    model, tokenizer = embedded
    cfg = model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (
        "llama",
        30,
        9,
        3,
    )
    assert cfg.hidden_size // cfg.num_attention_heads == 64 and cfg.max_position_embeddings == 8192
    assert tokenizer.chat_template


def test_passkey_dense_and_oracle_topk_10x(embedded, capsys):
    model, tokenizer = embedded
    prompt = passkey_prompt(tokenizer, 2048, key="73920", depth=0.4)
    pre = prefill(model, tokenizer, prompt.context)
    assert 1900 <= pre.num_tokens <= 2150
    answers = {}
    for method, sparsity in (("dense", 1), ("oracle_topk", 10)):
        res = decode(pre, prompt.question, method, Budget(sparsity=sparsity), 10, answer_prefix=prompt.answer_prefix)
        answers[method] = res
    with capsys.disabled():
        for method, res in answers.items():
            print(f"\n[embedded passkey, {pre.num_tokens} tokens] {method}: {res.text!r} {res.trace.format()}")
    assert prompt.answer in answers["dense"].text
    assert prompt.answer in answers["oracle_topk"].text
    summary = answers["oracle_topk"].trace.summary()
    assert summary["density"] == pytest.approx(0.1, abs=0.01)
    assert summary["mass_recall"] > 0.8


def test_the_converting_load_equals_a_cached_load(tmp_path, monkeypatch):
    """The first load (converting the GGUF) and later loads (its safetensors copy) give the same bf16 model: the
    rotary frequencies stay float32 in both, so both decode the same tokens."""
    import torch

    from ctxsparse.models import embedded_gguf_path, load_model

    try:
        embedded_gguf_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    monkeypatch.setenv("CTXSPARSE_CACHE", str(tmp_path))
    (first, _), (second, _) = (load_model("smollm2-135m", dtype="bfloat16") for _ in range(2))
    for model in (first, second):
        assert model.model.rotary_emb.inv_freq.dtype == torch.float32
    ids = torch.randint(5, 40000, (1, 200), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(first(ids).logits, second(ids).logits)

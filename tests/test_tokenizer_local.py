"""The local tokenizer is real, deterministic, round-trips text and renders ChatML."""

from ctxsparse import tokenizer_local
from ctxsparse.tokenizer_local import build_local_tokenizer


def test_cached_and_sized():
    tok = build_local_tokenizer()
    assert tok is build_local_tokenizer()
    assert 2000 <= len(tok) <= 4000


def test_deterministic_training():
    first = build_local_tokenizer().backend_tokenizer.to_str()
    tokenizer_local.build_local_tokenizer.cache_clear()
    try:
        assert build_local_tokenizer().backend_tokenizer.to_str() == first
    finally:
        tokenizer_local.build_local_tokenizer.cache_clear()


def test_round_trip_and_compression():
    tok = build_local_tokenizer()
    text = "The quiet lantern crossed the river. Port 8080, code E1234, id 3f2a-91c0. Ünïcödé ok!"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    words = "The garden was calm and the village was warm."
    assert len(tok.encode(words, add_special_tokens=False)) <= 12


def test_special_tokens_and_template():
    tok = build_local_tokenizer()
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    rendered = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok.convert_tokens_to_ids("<|im_end|>") in tok.encode(rendered, add_special_tokens=False)

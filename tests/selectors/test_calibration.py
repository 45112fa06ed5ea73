"""Calibration: the channel statistic, the capture on a real architecture, the file, and `ctxsparse calibrate`."""

from __future__ import annotations

import json

import pytest
import torch
from indexer_cases import make_ctx

from ctxsparse import Budget, DoubleSparsity
from ctxsparse.cli.main import main
from ctxsparse.generation import generate
from ctxsparse.models import load_model
from ctxsparse.selectors.calibration import (
    CALIBRATION_ENV,
    Calibration,
    _importance,
    builtin_text,
    calibrate_model,
    calibration_path,
)

MODEL = "random:tiny-llama"


@pytest.fixture(scope="module")
def tiny():
    return load_model(MODEL)


def test_importance_is_the_mean_over_causal_pairs():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 6, 3, generator=gen), torch.randn(1, 2, 6, 3, generator=gen)
    expected = torch.zeros(2, 3)
    for h in range(2):
        for t in range(6):
            pairs = (q[0, 2 * h : 2 * h + 2, t, None, :] * k[0, h, None, : t + 1, :]).abs()  # [g, s, D]
            expected[h] += pairs.mean(1).mean(0) / 6
    torch.testing.assert_close(_importance(q, k), expected)


def test_a_planted_channel_ranks_first_and_the_attention_implementation_is_restored(tiny):
    model, _ = tiny
    attn = model.model.layers[1].self_attn
    d, saved = 16, (attn.q_proj.weight.clone(), attn.k_proj.weight.clone())
    try:
        with torch.no_grad():  # kv head 1 (query heads 2, 3), pre-RoPE channel 5: RoPE pairs it with 13
            attn.k_proj.weight[d + 5] *= 30
            for h in (2, 3):
                attn.q_proj.weight[h * d + 5] *= 30
        ids = torch.randint(0, 3000, (1, 96), generator=torch.Generator().manual_seed(1))
        cal = calibrate_model(model, ids)
    finally:
        with torch.no_grad():
            attn.q_proj.weight.copy_(saved[0])
            attn.k_proj.weight.copy_(saved[1])
    assert model.config._attn_implementation == "sdpa"
    assert cal.model_key == MODEL and (cal.num_layers, cal.num_kv_heads, cal.head_dim) == (2, 2, 16)
    assert sorted(cal.channels[1][1][:2]) == [5, 13]
    assert sorted(cal.channels[1][0][:2]) != [5, 13]


def test_the_attention_implementation_is_restored_on_errors(tiny):
    model, _ = tiny
    with pytest.raises(IndexError):
        calibrate_model(model, torch.tensor([[1, 2, 10**6]]))
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match=r"\[1, T\]"):
        calibrate_model(model, torch.tensor([[1]]))


def test_builtin_text_is_deterministic_varied_prose():
    text = builtin_text(600)
    assert text == builtin_text(600) and text != builtin_text(600, seed=1)
    words = text.split()
    assert len(words) >= 600 and len(set(words)) > 150
    assert text.count("\n\n") >= 5 and text.count(".") > 40


def test_cli_writes_a_calibration_that_double_sparsity_loads(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CALIBRATION_ENV, str(tmp_path))
    assert main(["calibrate", "--model", MODEL, "--tokens", "300"]) == 0
    path = calibration_path(MODEL)
    assert path.parent == tmp_path and str(path) in capsys.readouterr().out
    data = json.loads(path.read_text())
    assert (data["model_key"], data["num_layers"], data["num_kv_heads"], data["head_dim"]) == (MODEL, 2, 2, 16)
    assert data["tokens"] == 300 and data["source"] == "builtin"
    model, tokenizer = tiny
    ds = DoubleSparsity(channels=4)
    result = generate(
        model, tokenizer, context=builtin_text(150), question="Who?", selector=ds, budget=Budget(sparsity=4),
        max_new_tokens=3,
    )  # fmt: skip
    assert len(result.token_ids) >= 1
    assert ds.resolve_calibration(make_ctx(model_key=MODEL)[0]) == Calibration.load(path)


def test_cli_reads_a_text_file_and_writes_where_asked(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("The lighthouse keeper counted the ships every night. " * 20)
    out = tmp_path / "sub" / "cal.json"
    assert main(["calibrate", "--model", MODEL, "--text", str(text), "--out", str(out), "--tokens", "5000"]) == 0
    cal = Calibration.load(out)
    assert cal.source == str(text) and 2 <= cal.tokens < 5000
    assert "note: calibrating on" in capsys.readouterr().out
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    assert main(["calibrate", "--model", MODEL, "--text", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--model" in out and "--tokens" in out and CALIBRATION_ENV in out


def test_default_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(CALIBRATION_ENV, raising=False)
    monkeypatch.setenv("CTXSPARSE_CACHE", str(tmp_path / "cache"))
    assert calibration_path("org/Model-1.5B") == tmp_path / "cache" / "calibration" / "org_Model-1.5B.json"
    monkeypatch.setenv(CALIBRATION_ENV, str(tmp_path / "cal"))
    assert calibration_path("smollm2-135m") == tmp_path / "cal" / "smollm2-135m.json"

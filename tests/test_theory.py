"""Theorem 1 as code: collisions exist for N > d + 1, on random V and on a model's value caches."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from ctxsparse import theory


def _values(n: int, d: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# --- the construction on random V ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,d,dtype",
    [(64, 16, torch.float32), (200, 64, torch.float64), (19, 17, torch.float32), (40, 8, torch.bfloat16)],
)
@pytest.mark.parametrize("step", [1.0, 0.5])
def test_collision_same_output_different_distributions(n, d, dtype, step):
    v = _values(n, d, dtype)
    c = theory.collision(v, seed=3, step=step)
    v64 = v.double()
    # Recompute the outputs independently of the dataclass.
    o1, o2 = v64.T @ c.a1, v64.T @ c.a2
    assert torch.allclose(o1, o2, rtol=0, atol=1e-12)
    assert c.max_abs_diff < 1e-12
    # Valid distributions, clearly different.
    for a in (c.a1, c.a2):
        assert a.shape == (n,) and a.dtype == torch.float64
        assert float(a.min()) >= 0.0
        assert abs(float(a.sum()) - 1.0) < 1e-12
    assert float((c.a1 - c.a2).abs().sum()) > 1e-4
    assert c.tv == pytest.approx(c.l1 / 2) and c.tv > 1e-4
    # Generic V: rank d + 1, null space N - d - 1.
    assert (c.rank, c.null_dim, c.n, c.d) == (d + 1, n - d - 1, n, d)
    assert c.support1 == n
    if step == 1.0:
        assert c.t == c.t_max and c.support2 == n - 1  # one token dropped, output unchanged
    else:
        assert c.t == pytest.approx(0.5 * c.t_max) and c.support2 == n
    check = theory.verify(c)
    assert check.passed, check.problems


def test_collision_is_deterministic_in_seed():
    v = _values(50, 10)
    a, b, other = theory.collision(v, seed=7), theory.collision(v, seed=7), theory.collision(v, seed=8)
    assert torch.equal(a.a2, b.a2)
    assert not torch.allclose(a.a2, other.a2)


def test_collision_uses_the_given_base():
    n, d = 30, 5
    logits = torch.linspace(-1, 1, n)
    base = torch.softmax(logits, dim=0)  # float32, sums to 1 within float32 rounding
    c = theory.collision(_values(n, d), base=base)
    assert torch.allclose(c.a1, base.double(), atol=1e-7)
    assert theory.verify(c).passed


def test_null_space_dimension_generic_and_degenerate():
    assert theory.null_space_dimension(_values(64, 16)) == 64 - 16 - 1
    assert theory.null_space_dimension(_values(10, 16)) == 0  # N <= d + 1: generically injective
    assert theory.augmented_rank(_values(64, 16, torch.float32)) == 17
    # Rank-3 V (d = 8): rank [V^T; 1^T] = 4.
    g = torch.Generator().manual_seed(1)
    low = torch.randn(64, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 8, generator=g, dtype=torch.float64)
    assert theory.null_space_dimension(low) == 64 - 4
    # A constant column duplicates the ones row: rank d, null space N - d.
    v = _values(64, 16)
    v[:, 0] = 2.5
    assert theory.null_space_dimension(v) == 64 - 16
    c = theory.collision(v)
    assert c.null_dim == 64 - 16 and theory.verify(c).passed


@pytest.mark.parametrize("n,d", [(17, 16), (16, 16), (3, 16)])
def test_theorem_does_not_apply_for_small_n(n, d):
    with pytest.raises(ValueError, match=r"N > d \+ 1"):
        theory.collision(_values(n, d))


@pytest.mark.parametrize(
    "base,match",
    [
        (torch.cat([torch.zeros(1), torch.full((29,), 1 / 29)]), "strictly positive"),
        (torch.cat([torch.full((1,), -0.1), torch.full((29,), 1.1 / 29)]), "strictly positive"),
        (torch.full((30,), 0.05), "sum to 1"),
        (torch.full((29,), 1 / 29), "N=30"),
        (torch.full((30,), float("nan")), "NaN"),
    ],
)
def test_bad_base(base, match):
    with pytest.raises(ValueError, match=match):
        theory.collision(_values(30, 5), base=base)


def test_bad_values_and_step():
    v = _values(30, 5)
    v[3, 2] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        theory.collision(v)
    with pytest.raises(ValueError, match="2-D"):
        theory.collision(torch.randn(30))
    with pytest.raises(ValueError, match="NaN or inf"):
        theory.null_space_dimension(torch.full((30, 5), float("nan")))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        theory.collision(_values(30, 5), step=1.5)


def test_verify_rejects_broken_collisions():
    c = theory.collision(_values(40, 8))
    same = dataclasses.replace(c, a2=c.a1.clone(), l1=0.0, tv=0.0)
    assert not theory.verify(same).passed
    off = dataclasses.replace(c, rel_output_error=1e-3)
    assert any("outputs differ" in p for p in theory.verify(off).problems)
    neg = c.a2.clone()
    neg[0] = -0.01
    assert any("negative" in p for p in theory.verify(dataclasses.replace(c, a2=neg)).problems)
    text = theory.format_collision(c, theory.verify(c))
    assert "PASS" in text and "null space dim = 31" in text


# --- real value caches of a tiny random Llama ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=100,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(cfg).eval()


def test_measure_model_tiny_llama(tiny_llama):
    n = 40
    ids = torch.randint(0, 100, (1, n), generator=torch.Generator().manual_seed(0))
    records = theory.measure_model(tiny_llama, input_ids=ids)
    assert [(r.layer, r.kv_head) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for r in records:
        assert (r.n, r.d) == (n, 16)
        assert r.rank <= r.d + 1 and r.null_dim == r.n - r.rank
        assert r.null_dim >= n - 16 - 1
        assert r.share == pytest.approx(r.null_dim / n)
        assert r.passed is True and r.max_abs_diff < 1e-10 and r.tv > 1e-6
    table = theory.format_model_table(records)
    assert table.splitlines()[0].split()[:2] == ["layers", "kv"]
    assert "4/4" in theory.model_summary(records)


def test_measure_model_short_context_is_injective(tiny_llama):
    records = theory.measure_model(tiny_llama, input_ids=torch.arange(10))
    assert all(r.n == 10 and r.null_dim == 0 and r.passed is None and r.tv is None for r in records)
    assert "skipped" in theory.model_summary(records)
    assert "n/a" in theory.format_model_table(records)


class _CharTokenizer:
    """Maps each character to an id below the tiny vocabulary, like a tokenizer's __call__."""

    def __call__(self, text, return_tensors="pt"):
        ids = torch.tensor([[ord(ch) % 100 for ch in text]])
        return type("Encoding", (), {"input_ids": ids})()


def test_measure_model_from_text(tiny_llama):
    records = theory.measure_model(tiny_llama, _CharTokenizer(), tokens=50)
    assert {r.n for r in records} == {50}  # the built-in prose, cut to 50 tokens
    records = theory.measure_model(tiny_llama, _CharTokenizer(), text="short text", tokens=50)
    assert {r.n for r in records} == {10}
    with pytest.raises(ValueError, match="tokenizer"):
        theory.measure_model(tiny_llama)


def test_default_prose_is_deterministic_and_varied():
    a, b = theory.default_prose(40), theory.default_prose(40)
    sentences = re.split(r'(?<=[.?!"])\s+', a)
    assert a == b and len(set(sentences)) > 30 and a != theory.default_prose(40, seed=1)


# --- the CLI ---------------------------------------------------------------------------------------------------


def test_cli_theorem(capsys):
    from ctxsparse.cli.main import main

    assert main(["theorem", "--n", "64", "--d", "16"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "N=64" in out and "null space dim = 47" in out


def test_cli_theorem_rejects_small_n(capsys):
    from ctxsparse.cli.main import main

    assert main(["theorem", "--n", "10", "--d", "16"]) == 2
    assert "N > d + 1" in capsys.readouterr().err


def test_cli_theorem_help(capsys):
    from ctxsparse.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["theorem", "--help"])
    assert exit_info.value.code == 0
    assert "--model" in capsys.readouterr().out

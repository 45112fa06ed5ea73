"""Double Sparsity: exact with all channels, approximate scores from calibrated labels, clear calibration errors."""

from __future__ import annotations

import pytest
import torch
from indexer_cases import decode_steps, fresh, make_ctx, random_calibration, same_selection

from ctxsparse.selectors import Calibration, DoubleSparsity, OracleTopK, make_selector
from ctxsparse.selectors.calibration import CALIBRATION_ENV
from ctxsparse.selectors.double_sparsity import quantize_labels


@pytest.mark.parametrize(
    ("granularity", "aggregate"), [("q_head", "prob_sum"), ("kv_head", "prob_sum"), ("kv_head", "logit_max")]
)
def test_all_channels_select_what_oracle_topk_selects(granularity, aggregate):
    ctx, _ = make_ctx(n=80, tq=3, seed=5)
    k = torch.full((2, 1, 3), 11, dtype=torch.int64)
    ds = DoubleSparsity(channels=16, calibration=random_calibration(), granularity=granularity, aggregate=aggregate)
    oracle = OracleTopK(granularity=granularity, aggregate=aggregate)
    assert same_selection(ds.select(ctx, k), oracle.select(ctx, k))


def test_approximate_scores_use_the_calibrated_channels_of_each_kv_head():
    ctx, _ = make_ctx(n=30, tq=1, b=1, extra=0)
    cal = random_calibration(seed=3)
    approx = DoubleSparsity(channels=3, calibration=cal).approx_scores(ctx)
    layer = cal.channels[ctx.layer_idx]
    for h in range(4):
        chan = layer[h // 2][:3]
        expected = ctx.query[0, h, 0, chan] @ ctx.keys[0, h // 2][:, chan].T * ctx.scale
        torch.testing.assert_close(approx[0, h, 0], expected)


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_labels_are_per_token_symmetric(bits):
    labels = torch.randn(2, 3, 50, 6) * torch.rand(2, 3, 50, 1) * 5
    codes, scales = quantize_labels(labels, bits)
    qmax = 2 ** (bits - 1) - 1
    assert codes.dtype == torch.int8 and codes.abs().max() <= qmax
    assert (codes.abs().amax(-1) == qmax).all(), "each token's largest label uses the full range"
    assert ((codes.float() * scales - labels).abs() <= scales / 2 + 1e-6).all()


def test_eight_bit_labels_stay_close_to_full_precision():
    ctx, _ = make_ctx(n=60, seed=8)
    exact = DoubleSparsity(channels=8, calibration=random_calibration()).approx_scores(ctx)
    rough = DoubleSparsity(channels=8, label_bits=8, calibration=random_calibration()).approx_scores(ctx)
    seen = torch.isfinite(exact)
    assert torch.equal(seen, torch.isfinite(rough))
    assert 0 < (exact[seen] - rough[seen]).abs().max() < 0.05


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("bits", [None, 4])
def test_incremental_label_cache_equals_a_rebuild(static, bits):
    ds = DoubleSparsity(channels=5, label_bits=bits, calibration=random_calibration())
    contexts, selections = decode_steps(ds, prefill=30, steps=7, static=static)
    last = contexts[-1]
    kept = last.state(ds)
    assert kept["indexed"] == 37 and kept["labels"].shape[2] == 37
    rebuilt = fresh(last)
    again = ds.select(rebuilt, torch.full((2, 1, 1), 9))
    for name in ("labels", "scales") if bits else ("labels",):
        assert torch.equal(kept[name], rebuilt.state(ds)[name])
    assert same_selection(selections[-1], again)


def test_missing_calibration_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv(CALIBRATION_ENV, str(tmp_path))
    ctx, _ = make_ctx(model_key="random:tiny-llama")
    with pytest.raises(FileNotFoundError, match="ctxsparse calibrate --model random:tiny-llama"):
        DoubleSparsity().select(ctx, ctx.visible_counts())


def test_default_calibration_is_found_by_model_key(tmp_path, monkeypatch):
    monkeypatch.setenv(CALIBRATION_ENV, str(tmp_path))
    path = random_calibration(model_key="org/model v1").save()
    assert path.parent == tmp_path and path.name == "org_model_v1.json"
    ctx, _ = make_ctx(model_key="org/model v1")
    sel = make_selector("double_sparsity:channels=4").select(ctx, ctx.visible_counts())
    assert torch.equal(sel.counts(), ctx.visible_counts().expand(-1, 4, -1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_key": "other-model"}, "not 'test-model'"),
        ({"num_layers": 3}, "layers 3 vs 2"),
        ({"hkv": 1}, "kv heads 1 vs 2"),
        ({"d": 8}, "head_dim 8 vs 16"),
    ],
)
def test_calibration_of_another_model_errors(change, message, tmp_path):
    cal = random_calibration(**change)
    ctx, _ = make_ctx()
    for given in (cal, cal.save(tmp_path / "cal.json"), str(tmp_path / "cal.json")):
        with pytest.raises(ValueError, match=message):
            DoubleSparsity(calibration=given).select(ctx, ctx.visible_counts())


def test_bad_parameters_error():
    with pytest.raises(ValueError, match="channels"):
        DoubleSparsity(channels=0)
    with pytest.raises(ValueError, match="label_bits"):
        DoubleSparsity(label_bits=3)
    with pytest.raises(TypeError, match="calibration"):
        DoubleSparsity(calibration=5)
    with pytest.raises(ValueError, match="aggregate"):
        DoubleSparsity(aggregate="mean")
    ctx, _ = make_ctx()
    with pytest.raises(ValueError, match="exceeds head_dim=16"):
        DoubleSparsity(channels=17, calibration=random_calibration()).select(ctx, ctx.visible_counts())


def test_calibration_file_checks(tmp_path):
    cal = random_calibration()
    loaded = Calibration.load(cal.save(tmp_path / "c.json"))
    assert loaded == cal
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a ctxsparse calibration"):
        Calibration.load(tmp_path / "x.json")
    with pytest.raises(ValueError, match="permutation"):
        Calibration("m", 1, 1, 4, [[[0, 1, 1, 2]]])

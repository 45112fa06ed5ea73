"""The indexers inside a real decoding session (tiny random Llama): exact at full budget, sparse otherwise."""

from __future__ import annotations

import pytest
import torch

from ctxsparse import Budget, DoubleSparsity, LSHSampling, Quest, VAttention
from ctxsparse.generation import decode, prefill
from ctxsparse.models import load_model
from ctxsparse.selectors.calibration import builtin_text, calibrate_model


@pytest.fixture(scope="module")
def prefilled():
    model, tokenizer = load_model("random:tiny-llama")
    cal = calibrate_model(model, torch.randint(0, 3000, (1, 128), generator=torch.Generator().manual_seed(0)))
    return prefill(model, tokenizer, builtin_text(160)), cal


def selectors(cal, granularity):
    return [
        Quest(page_size=8, granularity=granularity),
        DoubleSparsity(channels=4, label_bits=8, calibration=cal, granularity=granularity),
        VAttention(sink=2, window=8, min_samples=2, granularity=granularity),
        LSHSampling(bits=4, tables=8, granularity=granularity),
    ]


@pytest.mark.parametrize("granularity", ["q_head", "kv_head"])
def test_full_budget_decoding_is_dense(prefilled, granularity):
    pre, cal = prefilled
    for selector in selectors(cal, granularity):
        result = decode(pre, "Who repaired the lantern?", selector, Budget(density=1.0), max_new_tokens=4)
        summary = result.trace.summary()
        assert summary["output_error"] < 1e-5, type(selector).__name__
        assert summary["kl"] < 1e-6 and summary["top1_agreement"] == 1.0


def test_sparse_decoding_reads_about_the_budget(prefilled):
    pre, cal = prefilled
    for selector in selectors(cal, "q_head"):
        result = decode(pre, "Who repaired the lantern?", selector, Budget(sparsity=4), max_new_tokens=4)
        summary = result.trace.summary()
        assert summary["density"] <= 0.26, type(selector).__name__
        assert 0 < summary["mass_recall"] <= 1.0 + 1e-5

"""Fused q/k/v and gate/up projections: parameters become views of one tensor per group (no extra memory), plain
calls are unchanged, and inside shared_gemms() one GEMM per group gives the same logits."""

from __future__ import annotations

import pytest
import torch

from ctxsparse.engine import fused as fused_module
from ctxsparse.engine.fused import fuse_weights, shared_gemms
from ctxsparse.models import load_model


@pytest.mark.parametrize("family", ["tiny-llama", "tiny-qwen2"])  # qwen2: q/k/v with biases
def test_fused_projections_give_the_same_logits(family, monkeypatch):
    model, _ = load_model(f"random:{family}")
    calls = []
    linear = fused_module.F.linear
    monkeypatch.setattr(fused_module.F, "linear", lambda *a: calls.append(1) or linear(*a))
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        groups = fuse_weights(model)
        layers = model.config.num_hidden_layers
        assert len(groups) == 2 * layers
        attn = model.model.layers[0].self_attn
        qkv = groups[0] if groups[0].names[0] == "q_proj" else groups[1]
        assert attn.k_proj.weight.data_ptr() == qkv.weight[attn.q_proj.out_features].data_ptr()
        assert torch.equal(model(input_ids=ids).logits, before)  # the same values, now views
        with shared_gemms(groups) as active:
            calls.clear()
            fused = model(input_ids=ids).logits
        assert active == 2 * layers
        assert len(calls) == 4 * layers + 1  # per layer q/k/v, o, gate/up, down; then the head (unfused: 7 per layer)
        assert all("forward" not in m.__dict__ for g in groups for m in g.modules)
        assert torch.allclose(fused, before, atol=1e-5, rtol=1e-4)
        with shared_gemms(groups, mlp=False) as active:
            assert active == layers
    assert fuse_weights(model) is groups  # fused once per model

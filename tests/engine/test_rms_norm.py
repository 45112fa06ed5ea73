"""The one-kernel RMSNorm (Triton interpreter on CPU) against the model's own norm module."""

from __future__ import annotations

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from ctxsparse.engine.rms_norm import fast_norms, norm_modules, rms_norm
from ctxsparse.gpu_index.launch import INTERPRETED
from ctxsparse.models import load_model

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter test")


def test_one_kernel_norm_equals_the_module():
    norm = LlamaRMSNorm(256, eps=1e-5)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(256, generator=gen))
        x = torch.randn(3, 2, 256, generator=gen) * 4
        assert torch.allclose(rms_norm(norm, x), norm(x), atol=1e-5, rtol=1e-5)
        half = norm.to(torch.bfloat16)
        xb = x.bfloat16()
        # bf16 within one rounding step (the interpreter truncates where a GPU rounds to nearest)
        assert torch.allclose(rms_norm(half, xb).float(), half(xb).float(), rtol=2**-6, atol=2**-6)
        wide = LlamaRMSNorm(256, eps=1e-5)  # float32 weight, bf16 input: weight * y promotes as torch does
        assert rms_norm(wide, xb).dtype == wide(xb).dtype == torch.float32
        strided = x.transpose(0, 1)  # not contiguous: the module's own forward
        assert torch.equal(rms_norm(wide, strided), wide(strided))


def test_fast_norms_route_and_restore_the_model_norms():
    model, _ = load_model("random:tiny-llama")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        with fast_norms(model) as count:
            routed = model(input_ids=ids).logits
    assert count == 2 * model.config.num_hidden_layers + 1
    assert all("forward" not in m.__dict__ for m in norm_modules(model))
    assert torch.allclose(routed, before, atol=1e-4, rtol=1e-4)

"""One batched decode step (fused projections, one-kernel norms and rotary, Triton dense attention; Triton's
interpreter on CPU) against the engine's reference row path from the same cache: the logits' relative L2 error.

float32 isolates the pieces' arithmetic (any wrong position, weight, eps, scale or view shows far above 1e-5);
bfloat16 bounds the rounding of the half-precision kernels against the unfused modules.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ctxsparse.engine import Engine
from ctxsparse.engine.hook import attached
from ctxsparse.gpu_index.launch import INTERPRETED

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter test")


@pytest.fixture(scope="module")
def model32():
    cfg = AutoConfig.for_model("llama", hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=64, intermediate_size=896, vocab_size=2048,
                               max_position_embeddings=4096, rope_theta=500000.0)  # fmt: skip
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def _kernels_take_float32(monkeypatch) -> None:
    """The device path serves half types only; the interpreter runs the same kernels in float32."""
    dtypes = (torch.bfloat16, torch.float16, torch.float32)
    monkeypatch.setattr(importlib.import_module("ctxsparse.attention.sparse_decode"), "KERNEL_DTYPES", dtypes)
    monkeypatch.setattr(importlib.import_module("ctxsparse.engine.fast"), "KERNEL_DTYPES", dtypes)


def _step_and_reference(model) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
    """Logits [2, V] of one batched step and of the reference path from the same cache, and the piece counts."""
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randint(5, 2000, (n,), generator=gen).tolist() for n in (60, 35)]
    with torch.no_grad(), Engine(model, None, max_batch=2, max_len=80, graphs=False) as engine:
        result = engine.generate(input_ids=rows, max_new_tokens=3, stop_token_ids=[])
        assert result.mode == "eager"
        fast = engine.fast
        token = torch.tensor([row[-1] for row in result.token_ids])
        saved = engine.cache.lengths.clone()
        fast.backend.before_step(fast.host_lengths)
        with fast.session(), attached(model, fast.attend):
            pieces = (fast.fused_groups, fast.rotary_modules, fast.fast_norm_modules)
            step = fast.step_fn.run(token).float().clone()
        engine.cache.lengths.copy_(saved)
        with attached(model, engine._dispatch):
            reference = engine._forward_rows([0, 1], fast.host_lengths, token.view(-1, 1).tolist(), sparse=False)
    return step, reference.float(), pieces


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_batched_step_logits_near_the_reference_path(model32, monkeypatch, dtype, bound):
    _kernels_take_float32(monkeypatch)
    model = model32 if dtype == torch.float32 else AutoModelForCausalLM.from_config(model32.config, dtype=dtype)
    if dtype != torch.float32:
        model.load_state_dict(model32.state_dict())
        model.eval()
    step, reference, pieces = _step_and_reference(model)
    assert pieces == (8, 4, 9)  # every piece ran: 4 x (q/k/v, gate/up) GEMMs, rotary modules, 2 x 4 + 1 norms
    assert _relative(step, reference) <= bound
    assert torch.equal(step.argmax(-1), reference.argmax(-1))

"""Engine buffers take calls from inside and outside torch.inference_mode (Triton interpreter, batched path)."""

from __future__ import annotations

import pytest
import torch

from ctxsparse import Budget, DoubleSparsity
from ctxsparse.bench.generate import random_calibration
from ctxsparse.engine import Engine
from ctxsparse.gpu_index.launch import INTERPRETED

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter test")


@pytest.mark.parametrize("made_in_inference_mode", [True, False])
def test_engine_buffers_take_calls_from_either_autograd_mode(model, made_in_inference_mode):
    """An engine made and run inside torch.inference_mode, then stepped outside it (and the reverse): the
    cache, step inputs and indexer state are plain tensors, updated in place from either mode."""
    cal = random_calibration(model)
    selector = DoubleSparsity(channels=8, calibration=cal, granularity="kv_head", aggregate="logit_mean")
    rows = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [14, 15, 16, 17, 18, 19, 20]]
    first, second = (torch.inference_mode(), torch.enable_grad()) if made_in_inference_mode else (
        torch.enable_grad(), torch.inference_mode())  # fmt: skip

    with first:
        engine = Engine(model, None, selector=selector, budget=Budget(tokens=4), max_batch=2, max_len=32,
                        graphs=False)  # fmt: skip
        result = engine.generate(input_ids=rows, max_new_tokens=3, stop_token_ids=[])
    assert result.mode == "eager"
    with second:
        fast = engine.fast
        fast.backend.before_step(fast.host_lengths)
        logits = fast.step_fn.run(torch.tensor([row[-1] for row in result.token_ids]))
        again = engine.generate(input_ids=rows, max_new_tokens=3, stop_token_ids=[])
    assert logits.shape == (2, 512) and not logits.requires_grad
    assert again.token_ids == result.token_ids
    engine.close()

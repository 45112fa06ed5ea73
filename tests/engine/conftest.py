"""The small bf16 Llama the engine's batched-path tests share (head_dim 64: a size the decode kernels take)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM


@pytest.fixture(scope="module")
def model():
    """Two layers, 4 query and 2 kv heads of 64, bf16; one per test module (some tests fuse or compile it)."""
    cfg = AutoConfig.for_model("llama", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=64, intermediate_size=256, vocab_size=512,
                               max_position_embeddings=1024)  # fmt: skip
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).eval()

"""The byte floor of one decode step: the bytes a step must read (weights, then the method's KV or index
state, then the selected rows), and the time they take at a given bandwidth."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ctxsparse.engine.cache import CacheShape

LABEL_CHANNELS = 16
QUEST_PAGE = 16


def weight_read_bytes(model: torch.nn.Module) -> int:
    """Parameter bytes one decode step reads: all weights except an untied input embedding (only B rows of it)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    embed = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    if out is None or out.weight.data_ptr() != embed.data_ptr():
        total -= embed.numel() * embed.element_size()
    return total


@dataclass(frozen=True)
class StepBytes:
    """Bytes of one step of a batch: weights, the method's scan (all keys, labels or page bounds) and the rows
    it then reads in full (K and V of every token for dense; of the k selected tokens otherwise)."""

    weights: int
    scan: int
    rows: int

    @property
    def total(self) -> int:
        return self.weights + self.scan + self.rows

    def floor_ms(self, tbps: float) -> float:
        return self.total / (tbps * 1e12) * 1e3


def step_bytes(method: str, shape: CacheShape, weights: int, batch: int, context: int, k: int,
               group: int = 1) -> StepBytes:  # fmt: skip
    """Byte floor of a step at `context` tokens per row; k tokens per (row, kv head) for sparse methods, and per
    (row, query head) for vAttention, whose `group` query heads per kv head each read their own k."""
    per_token = shape.bytes_per_token  # K and V, all layers and kv heads
    item = torch.finfo(shape.dtype).bits // 8
    heads = shape.num_layers * shape.num_kv_heads
    if method == "weights_only":
        return StepBytes(weights, 0, 0)
    if method in ("dense", "stock"):
        return StepBytes(weights, 0, batch * context * per_token)
    selected = batch * min(k, context) * per_token
    if method == "oracle_topk":
        return StepBytes(weights, batch * context * per_token // 2, selected)
    if method == "double_sparsity":
        return StepBytes(weights, batch * context * heads * LABEL_CHANNELS * item, selected)
    if method == "quest":
        pages = math.ceil(context / QUEST_PAGE)
        read = batch * min(math.ceil(k / QUEST_PAGE) * QUEST_PAGE, context) * per_token
        return StepBytes(weights, batch * pages * heads * 2 * shape.head_dim * item, read)
    if method == "sink_window":
        return StepBytes(weights, 0, selected)
    if method == "vattention":
        return StepBytes(weights, batch * context * per_token // 2, selected * group)
    raise ValueError(f"No byte floor for method {method!r}.")

"""The engine's KV cache: every page allocated once up front, its size estimated and checked before allocation.

Layout per layer: pages [num_pages, page_size, Hkv, D] (FlashInfer's NHD paged layout, which the Triton
sparse decode kernel also reads) with a page table [max_batch, pages_per_row]. Rows own consecutive pages,
so row b's tokens are also one strided [max_len, Hkv, D] view; token n of row b sits in page
page_table[b, n // page_size] at slot n % page_size. A row's tokens start at slot 0 (padding is never
written), and `lengths[b]` (a device tensor) counts the tokens written so far.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from ctxsparse.engine.grad_mode import engine_mode


@dataclass(frozen=True)
class CacheShape:
    """Sizes of a static paged cache; `kv_bytes` is what allocating it costs."""

    num_layers: int
    max_batch: int
    max_len: int
    page_size: int
    num_kv_heads: int
    head_dim: int
    dtype: torch.dtype

    @property
    def pages_per_row(self) -> int:
        return math.ceil(self.max_len / self.page_size)

    @property
    def capacity(self) -> int:
        """Token slots per row (max_len rounded up to whole pages)."""
        return self.pages_per_row * self.page_size

    @property
    def num_pages(self) -> int:
        return self.max_batch * self.pages_per_row

    @property
    def bytes_per_token(self) -> int:
        """K and V bytes of one token over all layers."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * torch.finfo(self.dtype).bits // 8

    @property
    def kv_bytes(self) -> int:
        return self.num_pages * self.page_size * self.bytes_per_token


def free_bytes(device: torch.device) -> int | None:
    """Memory still free on the device (CUDA: the driver's figure; CPU: available RAM), None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return None
    return None


def check_fits(shape: CacheShape, device: torch.device, extra_bytes: int = 0, free: int | None = None) -> None:
    """Refuse, before allocating anything, a cache (plus `extra_bytes` of per-step buffers) that cannot fit."""
    need = shape.kv_bytes + extra_bytes
    free = free_bytes(device) if free is None else free
    if free is not None and need > free:
        raise MemoryError(
            f"The engine's KV cache needs {need / 1e9:.2f} GB ({shape.max_batch} rows x {shape.capacity} tokens x "
            f"{shape.bytes_per_token / 1e3:.1f} KB per token, plus {extra_bytes / 1e9:.2f} GB of step buffers) but "
            f"only {free / 1e9:.2f} GB are free on {device}. Lower max_len or max_batch."
        )


class PagedKVCache:
    """Preallocated K and V pages of every layer, the page table and each row's length (on the device)."""

    @engine_mode()
    def __init__(self, shape: CacheShape, device: torch.device) -> None:
        self.shape = shape
        self.device = device
        pages = (shape.num_layers, shape.num_pages, shape.page_size, shape.num_kv_heads, shape.head_dim)
        # zeros, not empty: slots past a row's length are read with weight 0 and must hold finite numbers
        self.k = torch.zeros(pages, dtype=shape.dtype, device=device)
        self.v = torch.zeros(pages, dtype=shape.dtype, device=device)
        ppr = shape.pages_per_row
        self.page_table = torch.arange(shape.num_pages, dtype=torch.int32, device=device).view(shape.max_batch, ppr)
        self.lengths = torch.zeros(shape.max_batch, dtype=torch.int32, device=device)

    def rows(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of a layer as [max_batch, capacity, Hkv, D] views (rows own consecutive pages)."""
        s = self.shape
        view = (s.max_batch, s.capacity, s.num_kv_heads, s.head_dim)
        return self.k[layer].view(view), self.v[layer].view(view)

    def head_major(self, layer: int, row: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of one row's first `length` tokens as [1, Hkv, length, D] views (no copy)."""
        k, v = self.rows(layer)
        return k[row : row + 1, :length].transpose(1, 2), v[row : row + 1, :length].transpose(1, 2)

    def write_row(self, layer: int, row: int, start: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Store key/value [1, Hkv, T, D] of one row at slots start .. start + T - 1."""
        k, v = self.rows(layer)
        t = key.shape[2]
        k[row, start : start + t] = key[0].transpose(0, 1)
        v[row, start : start + t] = value[0].transpose(0, 1)

    def flat_slots(self, batch: int) -> torch.Tensor:
        """int64 [batch]: where each row's next token goes in the flat [max_batch * capacity] token view."""
        base = torch.arange(batch, device=self.device) * self.shape.capacity
        return base + self.lengths[:batch]

    def write_step(self, layer: int, key: torch.Tensor, value: torch.Tensor, flat_slots: torch.Tensor) -> None:
        """Store the new token's key/value [B, Hkv, 1, D] of rows 0 .. B-1 at `flat_slots` (see flat_slots()):
        one copy kernel each for K and V."""
        s = self.shape
        flat = (s.num_pages * s.page_size, s.num_kv_heads, s.head_dim)
        self.k[layer].view(flat).index_copy_(0, flat_slots, key[:, :, 0])
        self.v[layer].view(flat).index_copy_(0, flat_slots, value[:, :, 0])

    def release(self) -> None:
        """Drop the pages (the engine calls this when it is closed)."""
        empty = torch.empty(0, device=self.device)
        self.k = self.v = empty

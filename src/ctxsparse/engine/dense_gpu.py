"""Dense attention inside the engine's decode step: FlashInfer's paged decode, or the Triton kernel without it.

FlashInfer runs in its CUDA-graph mode: its page lists live in fixed device buffers, and plan() (host work
from the host's copy of the row lengths, no device sync) refreshes them before each replay. Both of its
decode configurations (with and without tensor cores) are timed on the real cache once and the faster
one is kept, unless the caller pins one (their bf16 rounding differs, and a timing near a tie may pick either,
so pinning makes runs repeat exactly). Without FlashInfer the project's Triton sparse decode kernel reads
every visible token (an index list 0 .. N-1 with per-row lengths on the device).
"""

from __future__ import annotations

import importlib.util
import math

import torch

from ctxsparse.attention.sparse_decode import sparse_decode
from ctxsparse.engine.cache import PagedKVCache
from ctxsparse.engine.grad_mode import engine_mode

WORKSPACE_BYTES = 128 * 1024 * 1024
TIMING_ITERS = 5


def flashinfer_ready(device: torch.device) -> bool:
    return device.type == "cuda" and importlib.util.find_spec("flashinfer") is not None


class FlashInferDenseStep:
    """FlashInfer batch decode over each row's pages, planned per step from host lengths, captured in graphs."""

    @engine_mode()
    def __init__(self, cache: PagedKVCache, batch: int, num_q_heads: int, scale: float,
                 tensor_cores: bool | None = None) -> None:  # fmt: skip
        import flashinfer

        self.cache, self.batch, self.num_q_heads, self.scale = cache, batch, num_q_heads, scale
        dev, ppr = cache.device, cache.shape.pages_per_row
        self.table = cache.page_table[:batch].cpu()
        self.wrappers = {}
        for tc in (False, True):
            self.wrappers[tc] = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
                torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=dev),
                "NHD",
                use_cuda_graph=True,
                use_tensor_cores=tc,
                paged_kv_indptr_buffer=torch.zeros(batch + 1, dtype=torch.int32, device=dev),
                paged_kv_indices_buffer=torch.zeros(batch * ppr, dtype=torch.int32, device=dev),
                paged_kv_last_page_len_buffer=torch.zeros(batch, dtype=torch.int32, device=dev),
            )
        self.tensor_cores: bool | None = tensor_cores  # None: timed at the first step
        self.timings_us: dict[str, float] = {}
        self._planned: torch.cuda.Event | None = None

    @property
    def name(self) -> str:
        tc = "?" if self.tensor_cores is None else ("on" if self.tensor_cores else "off")
        return f"flashinfer (tensor cores {tc})"

    def _plan(self, wrapper, visible: list[int]) -> None:
        ps = self.cache.shape.page_size
        pages = [math.ceil(n / ps) for n in visible]
        indptr = torch.tensor([0, *torch.tensor(pages).cumsum(0).tolist()], dtype=torch.int32)
        indices = torch.cat([self.table[b, :p] for b, p in enumerate(pages)])
        last = torch.tensor([n - (p - 1) * ps for n, p in zip(visible, pages, strict=True)], dtype=torch.int32)
        s = self.cache.shape
        # plan() stages its schedule in a page-locked buffer and copies it to the device asynchronously: the
        # host waits until the previous plan's copy has run before overwriting that buffer (the host stays at
        # most one step ahead; never a wait inside a step)
        if self._planned is not None:
            self._planned.synchronize()
        wrapper.plan(indptr, indices, last, self.num_q_heads, s.num_kv_heads, s.head_dim, ps,
                     q_data_type=s.dtype, kv_data_type=s.dtype, sm_scale=self.scale)  # fmt: skip
        self._planned = torch.cuda.Event()
        self._planned.record()

    @engine_mode()
    def before_step(self, host_lengths: list[int]) -> None:
        """Plan for this step: each row sees its tokens so far plus the one the step writes."""
        visible = [n + 1 for n in host_lengths]
        if self.tensor_cores is None:
            self._choose(visible)
        self._plan(self.wrappers[self.tensor_cores], visible)

    def _choose(self, visible: list[int]) -> None:
        """Time both configurations on layer 0 of the real cache; keep the faster."""
        s = self.cache.shape
        q = torch.randn(self.batch, self.num_q_heads, s.head_dim, dtype=s.dtype, device=self.cache.device)
        for tc, wrapper in self.wrappers.items():
            self._plan(wrapper, visible)
            wrapper.run(q, (self.cache.k[0], self.cache.v[0]))
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(TIMING_ITERS):
                wrapper.run(q, (self.cache.k[0], self.cache.v[0]))
            end.record()
            end.synchronize()
            self.timings_us["tensor_cores_on" if tc else "tensor_cores_off"] = (
                start.elapsed_time(end) * 1e3 / TIMING_ITERS
            )
        self.tensor_cores = self.timings_us["tensor_cores_on"] < self.timings_us["tensor_cores_off"]

    def adopt(self, host_lengths: list[int]) -> None:
        """Nothing to index for dense attention."""

    def prepare(self, slots: torch.Tensor) -> None:
        """Nothing per step on the device: plan() did it on the host."""

    def attend(self, layer: int, q: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
        return self.wrappers[self.tensor_cores].run(q, (self.cache.k[layer], self.cache.v[layer]))


class TritonDenseStep:
    """Every visible token through the Triton sparse decode kernel (indices 0 .. capacity-1, lengths on device)."""

    name = "triton (dense: every token)"

    def __init__(self, cache: PagedKVCache, batch: int, num_q_heads: int, scale: float) -> None:
        s = cache.shape
        self.cache, self.batch = cache, batch
        self.indices = torch.arange(s.capacity, dtype=torch.int32, device=cache.device)
        self.indices = self.indices.expand(batch, s.num_kv_heads, -1).contiguous()
        self.out = torch.empty(batch, num_q_heads, s.head_dim, dtype=s.dtype, device=cache.device)
        self.visible = torch.zeros(batch, s.num_kv_heads, dtype=torch.long, device=cache.device)
        self.timings_us: dict[str, float] = {}

    def before_step(self, host_lengths: list[int]) -> None:
        """Nothing to plan: lengths are read from the device."""

    def adopt(self, host_lengths: list[int]) -> None:
        """Nothing to index for dense attention."""

    def prepare(self, slots: torch.Tensor) -> None:
        """Each row's visible tokens (the step's own included) per kv head, once per step."""
        self.visible = (slots + 1).view(-1, 1).expand(-1, self.cache.shape.num_kv_heads).contiguous()

    def attend(self, layer: int, q: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
        table = self.cache.page_table[: self.batch]
        k, v = self.cache.k[layer], self.cache.v[layer]
        return sparse_decode(q, k, v, self.indices, lengths=self.visible, scale=scale, page_table=table,
                             backend="triton", out=self.out)  # fmt: skip

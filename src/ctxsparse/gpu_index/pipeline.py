"""Indexer -> top-k -> sparse_decode as one decode call: plan() once for the shapes, run() every step.

run() only launches kernels into preallocated buffers (scores, histogram, candidate lists, indices,
output), so it never waits on the device and a CUDA graph can capture it. Stages, each a method so they
can be timed alone: index (zero the top-k counts, then label or page scores, counting coarse bins on the
way), select (filter and resolve: exact top-k, see topk.py), attend (sparse_decode over the selected
tokens, one selection per GQA group). The context length N is fixed by plan(): every cached position is visible.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ctxsparse.attention.sparse_decode import sparse_decode
from ctxsparse.gpu_index.label_score import AGGREGATES, check_labels, launch_label_scores
from ctxsparse.gpu_index.launch import INTERPRETED, check_device
from ctxsparse.gpu_index.page_score import check_bounds, launch_page_scores
from ctxsparse.gpu_index.topk import RowTopK

EXPAND_BLOCK = 1024


@triton.jit
def _expand_pages_kernel(
    page_ptr, tok_ptr, w_ptr, pages_per_row, context, PAGE_SIZE: tl.constexpr, BLOCK: tl.constexpr, TAIL: tl.constexpr
):
    # selected page p of a row names tokens p * PAGE_SIZE + j, j < PAGE_SIZE; slot s holds page s // PAGE_SIZE
    row = tl.program_id(0).to(tl.int64)
    slot = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    total = pages_per_row * PAGE_SIZE
    valid = slot < total
    page = tl.load(page_ptr + row * pages_per_row + slot // PAGE_SIZE, mask=valid, other=0)
    tok = page * PAGE_SIZE + slot % PAGE_SIZE
    if TAIL:  # the last page is partial: its slots past the context get weight 0 and a readable index
        tl.store(w_ptr + row * total + slot, (tok < context).to(tl.float32), mask=valid)
        tok = tl.minimum(tok, context - 1)
    tl.store(tok_ptr + row * total + slot, tok, mask=valid)


class _IndexedDecode:
    """What both pipelines share: the shape checks, the top-k, the attention stage, run()."""

    def __init__(self) -> None:
        self.planned = False

    def _plan(self, batch, num_q_heads, num_kv_heads, head_dim, context, items, k_items, dtype, device, scale,
              score_dtype) -> None:  # fmt: skip
        name = type(self).__name__
        if min(batch, num_q_heads, num_kv_heads, head_dim, context) < 1 or num_q_heads % num_kv_heads:
            raise ValueError(f"{name}: sizes must be positive and query heads a multiple of kv heads; got B={batch}, "
                             f"Hq={num_q_heads}, Hkv={num_kv_heads}, D={head_dim}, N={context}.")  # fmt: skip
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" names the current device, as tensors say
            device = torch.device("cuda", torch.cuda.current_device())
        if device.type != "cuda" and not INTERPRETED:
            raise ValueError(f"{name}: the pipeline runs on CUDA devices (or under TRITON_INTERPRET=1); got {device}.")
        self.batch, self.num_q_heads, self.num_kv_heads, self.head_dim = batch, num_q_heads, num_kv_heads, head_dim
        self.context, self.dtype, self.device = context, dtype, device
        self.scale = head_dim**-0.5 if scale is None else float(scale)
        self.topk = RowTopK()
        self.topk.plan(batch * num_kv_heads, items, k_items, score_dtype, device)
        self.scores = torch.empty(batch, num_kv_heads, items, dtype=score_dtype, device=device)
        self.out = torch.empty(batch, num_q_heads, head_dim, dtype=dtype, device=device)
        self.weights: torch.Tensor | None = None
        self.planned = True

    def _check_q(self, q: torch.Tensor) -> None:
        if not self.planned:
            raise RuntimeError(f"{type(self).__name__}: call plan() before run().")
        want = (self.batch, self.num_q_heads, self.head_dim)
        if tuple(q.shape) != want or q.dtype != self.dtype or q.device != self.device:
            raise ValueError(f"{type(self).__name__}: planned q {self.dtype} {want} on {self.device}; got {q.dtype} "
                             f"{tuple(q.shape)} on {q.device}.")  # fmt: skip

    @property
    def indices(self) -> torch.Tensor:
        """int32 [B, Hkv, k] token indices of the last select(), one row per GQA group."""
        return self.topk.out.view(self.batch, self.num_kv_heads, -1)

    def select(self) -> torch.Tensor:
        """Exact top-k over the scores of the last index() call (which counted their coarse bins); once per index()."""
        self.topk.select(self.scores.view(-1, self.scores.shape[-1]))
        return self.indices

    def attend(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor:
        """sparse_decode over the selected tokens into the planned output [B, Hq, D]."""
        want = (self.batch, self.num_kv_heads, self.context, self.head_dim)
        if tuple(k_cache.shape) != want:
            raise ValueError(f"{type(self).__name__}: planned caches [B, Hkv, N, D] = {want}; got "
                             f"{tuple(k_cache.shape)}.")  # fmt: skip
        return sparse_decode(q, k_cache, v_cache, self.indices, weights=self.weights, scale=self.scale,
                             backend="triton", out=self.out)  # fmt: skip


class DoubleSparsityDecode(_IndexedDecode):
    """Double Sparsity decode: label scores of r channels -> top-k tokens per GQA group -> sparse attention.

    plan(...) once; run(q, k_cache, v_cache, labels) per step, with labels [B, Hkv, N, r] holding the
    channels given to plan() (see label_score.label_cache_from_keys).
    """

    def plan(
        self,
        *,
        batch: int,
        num_q_heads: int,
        num_kv_heads: int,
        head_dim: int,
        context: int,
        k: int,
        channels: torch.Tensor,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cuda",
        scale: float | None = None,
        aggregate: str = "sum",
        score_dtype: torch.dtype = torch.float16,
    ) -> None:
        """Allocate every buffer for these shapes; k tokens per (batch, kv head) out of `context`."""
        if aggregate not in AGGREGATES:
            raise ValueError(f"DoubleSparsityDecode: aggregate must be one of {AGGREGATES}; got {aggregate!r}.")
        if not 1 <= k <= context:
            raise ValueError(f"DoubleSparsityDecode: k must lie in [1, context={context}]; got {k}.")
        if channels.dim() != 2 or channels.shape[0] != num_kv_heads or not 1 <= channels.shape[1] <= head_dim:
            raise ValueError(f"DoubleSparsityDecode: channels must be [Hkv={num_kv_heads}, 1 <= r <= {head_dim}]; got "
                             f"{tuple(channels.shape)}.")  # fmt: skip
        self._plan(batch, num_q_heads, num_kv_heads, head_dim, context, context, k, dtype, device, scale, score_dtype)
        self.channels = channels.to(device=self.device, dtype=torch.int32).contiguous()
        self.aggregate = aggregate
        self.k = k

    def index(self, q: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Label scores [B, Hkv, N] (and their coarse-bin counts for the next select())."""
        self._check_q(q)
        _, hkv, n = check_labels(q, labels, self.channels)
        if (hkv, n) != (self.num_kv_heads, self.context) or labels.shape[3] != self.channels.shape[1]:
            raise ValueError(f"DoubleSparsityDecode: labels {tuple(labels.shape)} do not match the plan "
                             f"(Hkv={self.num_kv_heads}, N={self.context}, r={self.channels.shape[1]}).")  # fmt: skip
        check_device("DoubleSparsityDecode", q, labels, self.scores)
        self.topk.reset()
        rows = self.scores.view(-1, self.context)
        launch_label_scores(q, labels, self.channels, rows, self.topk.hist, self.scale, self.aggregate)
        return self.scores

    def run(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One decode step: out [B, Hq, D] (the planned buffer) = attention over each group's top-k tokens."""
        self.index(q, labels)
        self.select()
        return self.attend(q, k_cache, v_cache)


class QuestDecode(_IndexedDecode):
    """Quest decode: page bounds -> top pages per GQA group -> sparse attention over their tokens.

    Reads ceil(k / page_size) whole pages per group. plan(...) once; run(q, k_cache, v_cache, page_min,
    page_max) per step, the bounds [B, Hkv, ceil(N / page_size), D] (see page_score.page_bounds_from_keys).
    """

    def plan(
        self,
        *,
        batch: int,
        num_q_heads: int,
        num_kv_heads: int,
        head_dim: int,
        context: int,
        k: int,
        page_size: int = 16,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cuda",
        scale: float | None = None,
        aggregate: str = "sum",
        score_dtype: torch.dtype = torch.float16,
    ) -> None:
        """Allocate every buffer for these shapes; ceil(k / page_size) pages per (batch, kv head)."""
        if aggregate not in AGGREGATES:
            raise ValueError(f"QuestDecode: aggregate must be one of {AGGREGATES}; got {aggregate!r}.")
        if not 1 <= k <= context or page_size < 1:
            raise ValueError(f"QuestDecode: need 1 <= k <= context={context} and page_size >= 1; got k={k}, "
                             f"page_size={page_size}.")  # fmt: skip
        pages = math.ceil(context / page_size)
        self.page_size, self.pages, self.aggregate = page_size, pages, aggregate
        self.k_pages = min(math.ceil(k / page_size), pages)
        self._plan(batch, num_q_heads, num_kv_heads, head_dim, context, pages, self.k_pages, dtype, device, scale,
                   score_dtype)  # fmt: skip
        self.k = self.k_pages * page_size
        self.tokens = torch.empty(batch, num_kv_heads, self.k, dtype=torch.int32, device=self.device)
        if pages * page_size != context:  # a partial last page: its slots past N are weighted 0
            self.weights = torch.empty(batch, num_kv_heads, self.k, dtype=torch.float32, device=self.device)

    @property
    def indices(self) -> torch.Tensor:
        """int32 [B, Hkv, k_pages * page_size] tokens of the pages chosen by the last select()."""
        return self.tokens

    @property
    def page_indices(self) -> torch.Tensor:
        """int32 [B, Hkv, k_pages]: the chosen pages."""
        return self.topk.out.view(self.batch, self.num_kv_heads, -1)

    def index(self, q: torch.Tensor, page_min: torch.Tensor, page_max: torch.Tensor) -> torch.Tensor:
        """Page bounds [B, Hkv, P] (and their coarse-bin counts for the next select())."""
        self._check_q(q)
        _, hkv, pages = check_bounds(q, page_min, page_max)
        if (hkv, pages) != (self.num_kv_heads, self.pages):
            raise ValueError(f"QuestDecode: page bounds {tuple(page_min.shape)} do not match the plan "
                             f"(Hkv={self.num_kv_heads}, P={self.pages}).")  # fmt: skip
        check_device("QuestDecode", q, page_min, page_max, self.scores)
        self.topk.reset()
        rows = self.scores.view(-1, self.pages)
        launch_page_scores(q, page_min, page_max, rows, self.topk.hist, self.scale, self.aggregate)
        return self.scores

    def select(self) -> torch.Tensor:
        """Top pages, expanded to their tokens (self.tokens; self.weights marks slots past a partial last page)."""
        self.topk.select(self.scores.view(-1, self.pages))
        rows, total = self.batch * self.num_kv_heads, self.k
        tail = self.weights is not None
        _expand_pages_kernel[(rows, triton.cdiv(total, EXPAND_BLOCK))](
            self.topk.out, self.tokens, self.weights if tail else self.tokens, self.k_pages, self.context,
            PAGE_SIZE=self.page_size, BLOCK=EXPAND_BLOCK, TAIL=tail, num_warps=4,
        )  # fmt: skip
        return self.tokens

    def run(
        self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, page_min: torch.Tensor,
        page_max: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        """One decode step: out [B, Hq, D] (the planned buffer) = attention over each group's top pages."""
        self.index(q, page_min, page_max)
        self.select()
        return self.attend(q, k_cache, v_cache)

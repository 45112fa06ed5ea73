"""The batched decode path: which methods it serves, what its buffers cost, and the step per (batch, k).

The dense method reads every token (FlashInfer, else Triton); sparse methods with a GPU pipeline are
OracleTopK, DoubleSparsity and Quest per GQA group (granularity='kv_head'), SinkWindow, and VAttention per
query head with its exact top-k. Anything else runs on the engine's reference path (row by row through the
selector).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
from collections.abc import Iterator

import torch

from ctxsparse.attention.sparse_decode import KERNEL_DTYPES, KERNEL_HEAD_DIMS
from ctxsparse.budget import Budget
from ctxsparse.engine.cache import CacheShape, PagedKVCache
from ctxsparse.engine.compiled import compiled
from ctxsparse.engine.dense_gpu import FlashInferDenseStep, TritonDenseStep, flashinfer_ready
from ctxsparse.engine.fused import fuse_weights, shared_gemms
from ctxsparse.engine.grad_mode import engine_mode
from ctxsparse.engine.hook import attention_modules
from ctxsparse.engine.indexers import GROUP_AGGREGATES, LabelIndexer, OracleIndexer, PageIndexer
from ctxsparse.engine.rms_norm import fast_norms
from ctxsparse.engine.rotary import fast_rotary
from ctxsparse.engine.sparse_gpu import SinkWindowStep, SparseStep
from ctxsparse.engine.step import DecodeStep
from ctxsparse.engine.vattention_gpu import VAttentionStep, sink_window_only, vattention_problem
from ctxsparse.models import model_key
from ctxsparse.selectors import Dense, DoubleSparsity, OracleTopK, Quest, SinkWindow, VAttention
from ctxsparse.selectors.base import Selector


def _interpreted() -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    from ctxsparse.gpu_index.launch import INTERPRETED

    return INTERPRETED


def method_problem(selector: Selector) -> str | None:
    """Why `selector` has no GPU pipeline in the engine, or None when it has one."""
    name = type(selector).__name__
    if isinstance(selector, (Dense, SinkWindow)):
        return None
    if isinstance(selector, VAttention):
        return vattention_problem(selector)
    if not isinstance(selector, (OracleTopK, DoubleSparsity, Quest)):
        pipelines = "OracleTopK, DoubleSparsity, Quest, SinkWindow, VAttention"
        return f"{name} has no GPU pipeline (the engine's are {pipelines})"
    if selector.granularity != "kv_head":
        return f"{name}'s GPU pipeline selects per GQA group: use granularity='kv_head'"
    if isinstance(selector, (OracleTopK, DoubleSparsity)) and selector.aggregate not in GROUP_AGGREGATES:
        return f"{name}'s GPU pipeline combines a group's logits by {' or '.join(GROUP_AGGREGATES)}: set aggregate"
    if isinstance(selector, DoubleSparsity) and selector.label_bits is not None:
        return "DoubleSparsity's GPU pipeline keeps labels in the cache's dtype: use label_bits=None"
    return None


def fast_path_problem(selector: Selector, device: torch.device, dtype: torch.dtype, head_dim: int) -> str | None:
    """Why decode steps cannot run batched on the device's kernels, or None when they can."""
    if device.type != "cuda" and not _interpreted():
        return f"the model is on {device.type}; CUDA graphs and the GPU kernels need a CUDA device"
    if importlib.util.find_spec("triton") is None:
        return "the triton package is missing (pip install ctxsparse[gpu])"
    if dtype not in KERNEL_DTYPES or head_dim not in KERNEL_HEAD_DIMS:
        return f"the decode kernels take {KERNEL_DTYPES} and head_dim in {KERNEL_HEAD_DIMS}; got {dtype}, {head_dim}"
    return method_problem(selector)


def step_buffer_bytes(shape: CacheShape, selector: Selector, budget: Budget, vocab: int,
                      num_q_heads: int | None = None) -> int:  # fmt: skip
    """A bound on the batched path's buffers beyond the cache: indexer state, scores, top-k lists, logits."""
    item = torch.finfo(shape.dtype).bits // 8
    tokens = shape.max_batch * shape.num_kv_heads * shape.capacity  # (row, kv head, slot) triples
    total = shape.max_batch * vocab * 4 + tokens * 4  # logits; dense index list
    if isinstance(selector, Dense | SinkWindow):
        return total
    scores = tokens * (2 + 2 + 4)  # scores and the top-k's candidate values and indices
    if isinstance(selector, VAttention):  # per (row, query head, slot): float32 logits and variates (and a
        # temporary), a mask byte, and two top-k candidate lists of float32 values and int32 indices
        return total + shape.max_batch * (num_q_heads or shape.num_kv_heads) * shape.capacity * 32
    if isinstance(selector, OracleTopK):
        return total + scores
    if isinstance(selector, DoubleSparsity):
        return total + scores + shape.num_layers * tokens * selector.channels * item
    if isinstance(selector, Quest):
        return total + scores + 2 * shape.num_layers * math.ceil(tokens / selector.page_size) * shape.head_dim * item
    return total


class FastDecode:
    """Batched decode steps on the device's kernels, captured in a CUDA graph per (batch, k) when `graphs`."""

    def __init__(self, model: torch.nn.Module, cache: PagedKVCache, selector: Selector, budget: Budget,
                 graphs: bool, compile_mode: str | None = None,
                 dense_tensor_cores: bool | None = None) -> None:  # fmt: skip
        self.model, self.cache, self.selector, self.budget, self.graphs = model, cache, selector, budget, graphs
        self.dense_tensor_cores = dense_tensor_cores  # FlashInfer's switch: None times both, else pinned
        self.compile_mode = compile_mode  # None: no torch.compile; "default" or a torch.compile mode
        self.num_q_heads = model.config.num_attention_heads
        self.scale = float(attention_modules(model)[0].scaling)
        self.steps: dict[tuple[int, int, bool], tuple[object, DecodeStep]] = {}
        self.backend = None
        self.step_fn: DecodeStep | None = None
        self.host_lengths: list[int] = []
        self.flat_slots: torch.Tensor | None = None
        self.fused_groups = 0  # projection groups run as one GEMM in the last session
        self.rotary_modules = 0  # modeling modules whose rotary ran as one kernel in the last session
        self.fast_norm_modules = 0  # RMSNorm modules run as one kernel in the last session

    @property
    def attention_name(self) -> str:
        return "" if self.backend is None else self.backend.name

    @property
    def attention_timings_us(self) -> dict[str, float]:
        return {} if self.backend is None else dict(self.backend.timings_us)

    def _make_backend(self, batch: int, k: int, weighted: bool):
        args = (self.cache, batch, self.num_q_heads)
        sel = self.selector
        if isinstance(sel, Dense):
            if flashinfer_ready(self.cache.device):
                return FlashInferDenseStep(*args, self.scale, tensor_cores=self.dense_tensor_cores)
            return TritonDenseStep(*args, self.scale)
        if isinstance(sel, SinkWindow):
            return SinkWindowStep(sel, *args, k)
        if isinstance(sel, VAttention):
            if sink_window_only(sel, k):  # no room past sink and window: exactly SinkWindow's tokens
                step = SinkWindowStep(SinkWindow(sel.sink, sel.window), *args, k)
                step.name = f"vattention pipeline (k={k}: sink and window only)"
                return step
            return VAttentionStep(sel, *args, k)
        if isinstance(sel, OracleTopK):
            indexer = OracleIndexer(sel, *args)
        elif isinstance(sel, DoubleSparsity):
            indexer = LabelIndexer(sel, *args, model_key(self.model))
        else:
            indexer = PageIndexer(sel, *args)
        return SparseStep(indexer, *args, k, f"{sel.name} pipeline (k={k}, top-k + triton sparse decode)", weighted)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """The context decode steps run in: q/k/v and gate/up projections as one GEMM each, rotary embeddings and
        RMSNorms as one kernel each; or, when compiling, the MLPs and norms through torch.compile (gate/up then
        stay apart: the compiled MLP traces the module's own forward)."""
        groups = fuse_weights(self.model)
        s = self.cache.shape
        rotary = fast_rotary(self.cache.device, s.dtype, s.head_dim)
        with shared_gemms(groups, mlp=self.compile_mode is None) as self.fused_groups, rotary as self.rotary_modules:
            if self.compile_mode is None:
                with fast_norms(self.model) as self.fast_norm_modules:
                    yield
                return
            with compiled(self.model, None if self.compile_mode == "default" else self.compile_mode):
                yield

    def begin(self, batch: int, host_lengths: list[int], max_new_tokens: int) -> None:
        """Pick (or build and capture) the step for this batch; index the prefilled cache (inside session()).

        A sparse step reads k = budget.tokens_for(longest row's final length) tokens per (row, kv head), fixed
        for the whole call so the graph never changes (the reference path recomputes k every step, from each
        row's own length; a row shorter than k reads all its tokens).
        """
        dense = isinstance(self.selector, Dense)
        k = 0 if dense else self.budget.tokens_for(max(host_lengths) + max_new_tokens)
        # a row that sees fewer than k tokens at the first step may select slots past its length: weights mark them
        weighted = not dense and min(host_lengths) + 1 < k
        key = (batch, k, weighted)
        with engine_mode():
            if key not in self.steps:
                step = DecodeStep(self.model, self.cache, batch, prepare=self._prepare)
                self.steps[key] = (self._make_backend(batch, k, weighted), step)
            self.backend, self.step_fn = self.steps[key]
            self.host_lengths = list(host_lengths)
            self.backend.adopt(self.host_lengths)
            self.backend.before_step(self.host_lengths)
            if self.graphs and self.step_fn.graph is None:
                self.step_fn.capture()

    def _prepare(self, batch: int) -> None:
        """Once per step, before the layers: where the step's token goes, and the backend's per-step tensors."""
        self.flat_slots = self.cache.flat_slots(batch)
        self.backend.prepare(self.cache.lengths[:batch].long())

    def attend(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float):
        """The engine's attention inside a step: store the new token, then attend ([B, Hq, 1, D])."""
        self.cache.write_step(layer, key, value, self.flat_slots)
        return self.backend.attend(layer, query[:, :, 0].contiguous(), key[:, :, 0], scale).unsqueeze(2)

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Run one step for the current tokens [B]; logits [B, V]."""
        self.backend.before_step(self.host_lengths)
        logits = self.step_fn.run(token)
        self.host_lengths = [n + 1 for n in self.host_lengths]
        return logits

    def release(self) -> None:
        for _, step in self.steps.values():
            step.release()
        self.steps.clear()
        self.backend = self.step_fn = None

"""sparse_decode: one decode step of attention over each head's selected tokens, on the fastest backend.

The public entry checks shapes, dtypes and devices on the host (cheap, never a device sync), then hands
the call to the Triton kernel, the torch reference or FlashInfer's vector-sparse path. The full range
check of indices and page ids needs the device data, so it runs only with debug=True or
CTXSPARSE_DEBUG=1 in the environment.

Eager calls are cheap on the host: every check depends only on the inputs' shapes, strides, dtypes,
devices and alignment, and so does the Triton launch plan, so both are done once per such signature and
the plan is kept (FlashInfer's plan/run split, without a separate plan call). A repeated call builds its
signature, finds the plan and launches the compiled kernels through their C launchers, bound at plan time
(triton_launch.py).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os

import torch

from ctxsparse.attention.reference import sparse_attention_reference
from ctxsparse.selection import Selection

BACKENDS: tuple[str, ...] = ("auto", "triton", "reference", "flashinfer")
KERNEL_DTYPES = (torch.bfloat16, torch.float16)
KERNEL_HEAD_DIMS = (64, 128, 256)
INDEX_DTYPES = (torch.int32, torch.int64)


def _fail(cls: type[Exception], message: str) -> None:
    raise cls(f"sparse_decode: {message}")


def _as_rows(
    selection: Selection | torch.Tensor, lengths: torch.Tensor | None, weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(indices [B, H, k], lengths [B, H] or None, weights [B, H, k] or None) as views, no copies."""
    if isinstance(selection, Selection):
        if lengths is not None or weights is not None:
            _fail(ValueError, "pass lengths/weights inside the Selection, not as keywords, when giving one.")
        if selection.indices.shape[2] != 1:
            _fail(ValueError, f"decode reads one query token per row (Tq = 1); got Tq = {selection.indices.shape[2]}.")
        lengths = None if selection.lengths is None else selection.lengths.select(2, 0)
        weights = None if selection.weights is None else selection.weights.select(2, 0)
        return selection.indices.select(2, 0), lengths, weights
    if not isinstance(selection, torch.Tensor):
        _fail(TypeError, f"selection must be a Selection or an index tensor [B, H, k]; got {type(selection)}.")
    if selection.dim() != 3:
        _fail(ValueError, f"an index tensor selection must be [B, H, k]; got shape {tuple(selection.shape)}.")
    return selection, lengths, weights


def _check_cache(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, page_table: torch.Tensor | None):
    """Return (kv heads, positions a selection may name); raise on any mismatch with q."""
    if k_cache.dim() != 4 or tuple(k_cache.shape) != tuple(v_cache.shape):
        _fail(
            ValueError,
            f"k_cache and v_cache must be 4-D and alike; got {tuple(k_cache.shape)} and {tuple(v_cache.shape)}.",
        )
    bsz, _, head_dim = q.shape
    if page_table is None:
        if k_cache.shape[0] != bsz:
            _fail(ValueError, f"cache batch {k_cache.shape[0]} != query batch {bsz} (caches are [B, Hkv, N, D]).")
        num_kv_heads, positions = k_cache.shape[1], k_cache.shape[2]
    else:
        if page_table.dim() != 2 or page_table.shape[0] != bsz:
            _fail(ValueError, f"page_table must be [B={bsz}, max_pages]; got {tuple(page_table.shape)}.")
        if page_table.dtype not in INDEX_DTYPES:
            _fail(TypeError, f"page_table must be int32 or int64; got {page_table.dtype}.")
        num_kv_heads, positions = k_cache.shape[2], page_table.shape[1] * k_cache.shape[1]
    if k_cache.shape[3] != head_dim:
        _fail(ValueError, f"cache head_dim {k_cache.shape[3]} != query head_dim {head_dim}.")
    if positions == 0:
        _fail(ValueError, "the KV cache is empty: prefill a context before decoding.")
    if q.shape[1] % num_kv_heads:
        _fail(ValueError, f"{q.shape[1]} query heads are not a multiple of {num_kv_heads} kv heads.")
    if k_cache.dtype != q.dtype or v_cache.dtype != q.dtype:
        _fail(TypeError, f"q, k_cache and v_cache must share a dtype; got {q.dtype}, {k_cache.dtype}, {v_cache.dtype}.")
    return num_kv_heads, positions


def _check_selection(
    q: torch.Tensor,
    num_kv_heads: int,
    indices: torch.Tensor,
    lengths: torch.Tensor | None,
    weights: torch.Tensor | None,
) -> None:
    bsz, num_q_heads, _ = q.shape
    if indices.dtype not in INDEX_DTYPES:
        _fail(TypeError, f"selection indices must be int32 or int64; got {indices.dtype}.")
    if indices.shape[0] != bsz or indices.shape[1] not in (num_kv_heads, num_q_heads):
        _fail(
            ValueError,
            f"selection indices {tuple(indices.shape)} must be [B={bsz}, H, k] with H = {num_kv_heads} "
            f"(per kv head) or {num_q_heads} (per query head).",
        )
    if indices.shape[2] == 0:
        _fail(ValueError, "the selection is empty (k = 0): every row must name at least one slot.")
    if lengths is not None:
        if tuple(lengths.shape) != tuple(indices.shape[:2]) or lengths.dtype not in INDEX_DTYPES:
            _fail(ValueError, f"lengths must be int [B, H] = {tuple(indices.shape[:2])}; got {lengths.dtype} "
                  f"{tuple(lengths.shape)}.")  # fmt: skip
    if weights is not None:
        if tuple(weights.shape) != tuple(indices.shape) or not weights.is_floating_point():
            _fail(ValueError, f"weights must be float {tuple(indices.shape)}; got {weights.dtype} "
                  f"{tuple(weights.shape)}.")  # fmt: skip


def _check_devices(*tensors: torch.Tensor | None) -> None:
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        _fail(ValueError, f"all inputs must be on one device; got {sorted(map(str, devices))}.")


def _check_ranges(indices, lengths, positions: int, page_table, num_pages: int) -> None:
    """Debug-only: every valid index in [0, positions), lengths in [0, k], page ids in [0, pages)."""
    k = indices.shape[-1]
    valid = torch.ones_like(indices, dtype=torch.bool)
    if lengths is not None:
        if bool(((lengths < 0) | (lengths > k)).any()):
            _fail(IndexError, f"lengths must lie in [0, {k}]; got [{int(lengths.min())}, {int(lengths.max())}].")
        valid = torch.arange(k, device=indices.device) < lengths.unsqueeze(-1)
    bad = valid & ((indices < 0) | (indices >= positions))
    if bool(bad.any()):
        _fail(IndexError, f"selection indices must lie in [0, {positions}); got {int(indices[bad][0])}.")
    if page_table is not None and bool(((page_table < 0) | (page_table >= num_pages)).any()):
        _fail(IndexError, f"page_table entries must lie in [0, {num_pages}).")


def _debug_enabled(debug: bool | None) -> bool:
    return os.environ.get("CTXSPARSE_DEBUG", "0") not in ("", "0") if debug is None else debug


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _kernel_ready(q: torch.Tensor) -> bool:
    if q.dtype not in KERNEL_DTYPES or q.shape[-1] not in KERNEL_HEAD_DIMS:
        return False
    return q.is_cuda and _triton_installed()


# Planned Triton launches by call signature (see _signature); the checks passed for every signature here.
_PLANS: dict[tuple, object] = {}
MAX_PLANS = 4096  # a process that cycles through more signatures than this re-plans from scratch


def _signature(q, k_cache, v_cache, indices, lengths, weights, page_table, out, scale, backend, return_lse) -> tuple:
    """What the checks and the launch plan read of the inputs, as one flat tuple: per tensor its shape,
    strides, dtype, device and 16-byte alignment (None for an absent optional input)."""
    key = (backend, scale, return_lse,
           q.shape, q.stride(), q.dtype, q.device, not q.data_ptr() & 15,
           k_cache.shape, k_cache.stride(), k_cache.dtype, k_cache.device, not k_cache.data_ptr() & 15,
           v_cache.shape, v_cache.stride(), v_cache.dtype, v_cache.device, not v_cache.data_ptr() & 15,
           indices.shape, indices.stride(), indices.dtype, indices.device, not indices.data_ptr() & 15)  # fmt: skip
    for t in (lengths, weights, page_table, out):
        key += (None,) if t is None else (t.shape, t.stride(), t.dtype, t.device, not t.data_ptr() & 15)
    return key


def _reference(q, k_cache, v_cache, indices, lengths, weights, scale, page_table, return_lse):
    if page_table is not None:
        # gather pages into [B, Hkv, max_pages * page_size, D] for the torch reference
        bsz, max_pages = page_table.shape
        flat = lambda c: c[page_table.long()].reshape(bsz, max_pages * c.shape[1], c.shape[2], c.shape[3])
        k_cache, v_cache = flat(k_cache).transpose(1, 2), flat(v_cache).transpose(1, 2)
    sel = Selection(
        indices[:, :, None],
        None if lengths is None else lengths[:, :, None],
        None if weights is None else weights[:, :, None],
    )
    res = sparse_attention_reference(q[:, :, None], k_cache, v_cache, sel, scale=scale, return_lse=True)
    out, lse = res[0][:, :, 0], res[1][:, :, 0]
    return (out, lse) if return_lse else out


def sparse_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    selection: Selection | torch.Tensor,
    *,
    lengths: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    scale: float | None = None,
    page_table: torch.Tensor | None = None,
    backend: str = "auto",
    return_lse: bool = False,
    out: torch.Tensor | None = None,
    debug: bool | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention of one decode query per head over only its selected cached tokens.

    q [B, Hq, D]; caches [B, Hkv, N, D] (any strides, D contiguous) or paged [pages, page_size, Hkv, D]
    with page_table [B, max_pages] (token n of batch b at page page_table[b, n // page_size]).
    selection: a Selection with indices [B, H, 1, k], or an index tensor [B, H, k] with optional
    lengths [B, H] and weights [B, H, k]; H = Hkv (one selection per GQA group, each row read once for
    the group) or Hq. out = sum_j w_j e^(s_j) v_j / sum_j w_j e^(s_j) over the valid slots, s_j = scale
    q.k_j. Returns [B, Hq, D] in q's dtype, and the natural log-sum-exp [B, Hq] (fp32) on request; a row
    with no valid slot gives zeros and -inf. `out` ([B, Hq, D], q's dtype) receives the result in place
    (a fixed buffer for CUDA graphs). Indices are range-checked only when debug (or CTXSPARSE_DEBUG=1)
    is set: out-of-range indices otherwise read undefined memory.
    """
    if backend not in BACKENDS:
        _fail(ValueError, f"unknown backend {backend!r}; choose one of {BACKENDS}.")
    indices, lengths, weights = _as_rows(selection, lengths, weights)
    signature = None
    if backend != "reference" and backend != "flashinfer" and not _debug_enabled(debug):
        try:
            signature = _signature(q, k_cache, v_cache, indices, lengths, weights, page_table, out, scale, backend,
                                   return_lse)  # fmt: skip
        except (AttributeError, TypeError):  # not tensors: the checks below say what is wrong
            signature = None
        launch = _PLANS.get(signature) if signature is not None else None
        if launch is not None:
            return launch(q, k_cache, v_cache, indices, lengths, weights, page_table, out)
    if not isinstance(q, torch.Tensor) or q.dim() != 3:
        _fail(ValueError, f"q must be [B, Hq, D]; got {getattr(q, 'shape', type(q))}.")
    num_kv_heads, positions = _check_cache(q, k_cache, v_cache, page_table)
    _check_selection(q, num_kv_heads, indices, lengths, weights)
    _check_devices(q, k_cache, v_cache, indices, lengths, weights, page_table)
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache), ("out", out)):
        if t is not None and t.stride(-1) != 1:
            _fail(ValueError, f"{name} must be contiguous along head_dim (stride 1); call .contiguous() on it.")
    if out is not None and (tuple(out.shape) != tuple(q.shape) or out.dtype != q.dtype or out.device != q.device):
        _fail(ValueError, f"out must be {q.dtype} {tuple(q.shape)} on {q.device}; got {out.dtype} {tuple(out.shape)}.")
    if _debug_enabled(debug):
        _check_ranges(indices, lengths, positions, page_table, k_cache.shape[0])
    scale_value = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if backend == "auto":
        backend = "triton" if _kernel_ready(q) else "reference"

    if backend in ("reference", "flashinfer"):
        if backend == "reference":
            res = _reference(q, k_cache, v_cache, indices, lengths, weights, scale_value, page_table, True)
        else:
            from ctxsparse.attention.flashinfer_backend import flashinfer_sparse_decode

            res = flashinfer_sparse_decode(
                q, k_cache, v_cache, indices, lengths, weights, scale_value, page_table, True
            )
        result = res[0] if out is None else out.copy_(res[0])
        return (result, res[1]) if return_lse else result
    if q.dtype not in KERNEL_DTYPES or q.shape[-1] not in KERNEL_HEAD_DIMS:
        _fail(
            ValueError,
            f"the triton backend takes {KERNEL_DTYPES} with head_dim in {KERNEL_HEAD_DIMS}; got {q.dtype}, "
            f"head_dim {q.shape[-1]}. Use backend='reference'.",
        )
    if not _triton_installed():
        _fail(RuntimeError, "backend='triton' needs the triton package (pip install ctxsparse[gpu]).")
    from ctxsparse.attention.triton_decode import INTERPRETED, plan_decode

    if not q.is_cuda and not INTERPRETED:
        _fail(ValueError, f"the triton backend needs CUDA tensors; got {q.device}. Use backend='reference'.")
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():  # compile and load on q's GPU
        launch = plan_decode(q, k_cache, v_cache, indices, lengths, weights, scale_value, page_table, return_lse,
                             out=out)  # fmt: skip
    if signature is not None:
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.clear()
        _PLANS[signature] = launch
    return launch(q, k_cache, v_cache, indices, lengths, weights, page_table, out)

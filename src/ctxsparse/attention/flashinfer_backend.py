"""FlashInfer as the baseline: dense paged decode, and its vector-sparse path (page_size 1, rows folded).

Vector-sparse decode through FlashInfer: every (batch, selection head) row becomes one "request" of a
page_size=1 paged cache whose pages are single K/V rows of one kv head, so the request's page list is
exactly its selected tokens and the query heads of a GQA group are that request's query heads. Plan
(host work, syncs) once per selection; run (device work only) many times. Both wrappers plan FlashInfer's
two decode settings (use_tensor_cores off and on), time them on the shape and run the faster one.
"""

from __future__ import annotations

import importlib.util
import math

import torch

from ctxsparse.attention.fastest import FastestChoice, Timer, cuda_event_timer, pick_fastest

WORKSPACE_BYTES = 128 * 1024 * 1024
LN2 = 0.6931471805599453  # FlashInfer's log-sum-exp is in base 2


def flashinfer_available() -> bool:
    """True when the flashinfer package can be imported (the optional GPU baseline)."""
    return importlib.util.find_spec("flashinfer") is not None


def _flashinfer():
    if not flashinfer_available():
        raise RuntimeError("backend='flashinfer' needs the flashinfer-python package on a CUDA machine.")
    import flashinfer

    return flashinfer


def single_row_view(cache: torch.Tensor) -> torch.Tensor:
    """The cache's storage as [R, 1, 1, D] single-row pages; row r starts at element r * D of the tensor."""
    d = cache.shape[-1]
    if any(s % d for s in cache.stride()[:-1]) or cache.stride(-1) != 1:
        raise ValueError(f"cache strides {cache.stride()} are not whole rows of {d}: cannot fold into rows.")
    span = sum((n - 1) * s for n, s in zip(cache.shape[:-1], cache.stride()[:-1], strict=True)) // d + 1
    return cache.as_strided((span, 1, 1, d), (d, d, d, 1))


def folded_rows(
    indices: torch.Tensor, k_cache: torch.Tensor, num_q_heads: int, page_table: torch.Tensor | None
) -> torch.Tensor:
    """Row ids, int64 [B, H, k], of the selected tokens in single_row_view(k_cache).

    Contiguous [B, Hkv, N, D]: row = (b*s_b + h*s_h + n*s_n) / D. Paged [pages, page_size, Hkv, D]:
    row = (page_table[b, n // page_size]*s_p + (n % page_size)*s_s + h*s_h) / D.
    """
    bsz, num_sel, _ = indices.shape
    dev = indices.device
    d = k_cache.shape[-1]
    num_kv_heads = k_cache.shape[2] if page_table is not None else k_cache.shape[1]
    group = num_q_heads // num_kv_heads
    # kv head of each selection row: itself (kv-head selections) or query head // group
    kv = torch.arange(num_sel, device=dev) // (1 if num_sel == num_kv_heads else group)
    b = torch.arange(bsz, device=dev).view(bsz, 1, 1)
    n = indices.long()
    if page_table is None:
        sb, sh, sn = k_cache.stride(0), k_cache.stride(1), k_cache.stride(2)
        offset = b * sb + kv.view(1, -1, 1) * sh + n * sn
    else:
        ps = k_cache.shape[1]
        sp, ss, sh = k_cache.stride(0), k_cache.stride(1), k_cache.stride(2)
        pages = torch.gather(page_table.long().unsqueeze(1).expand(-1, num_sel, -1), 2, n // ps)
        offset = pages * sp + (n % ps) * ss + kv.view(1, -1, 1) * sh
    return offset // d


SETTINGS: dict[str, bool] = {"cuda_cores": False, "tensor_cores": True}  # name -> use_tensor_cores
_CHOICES: dict[tuple, FastestChoice] = {}  # shape class -> the setting timed fastest there (default timer only)


class _TwoSettingDecode:
    """FlashInfer's paged decode wrapper in both use_tensor_cores settings.

    use_tensor_cores=None (the default) plans both settings and times them on the planned shape (timer:
    µs per call; CUDA events by default), then runs the faster one; True or False runs that setting alone.
    With the default timer a choice is remembered per shape class (sizes, dtype, context rounded up to a
    power of two), so repeated plans of growing contexts time once per doubling. `choice` holds the times.
    """

    def __init__(
        self,
        device: torch.device,
        workspace_bytes: int = WORKSPACE_BYTES,
        use_tensor_cores: bool | None = None,
        timer: Timer | None = None,
    ) -> None:
        fi = _flashinfer()
        self.device = torch.device(device)
        names = list(SETTINGS) if use_tensor_cores is None else [_setting_name(bool(use_tensor_cores))]
        # One float workspace for both: it holds only a run's split-k scratch (each wrapper keeps its plan in
        # its own int workspace), and the two settings never run at once.
        self.workspace = torch.zeros(workspace_bytes, dtype=torch.uint8, device=self.device)
        self.wrappers = {
            n: fi.BatchDecodeWithPagedKVCacheWrapper(self.workspace, "NHD", use_tensor_cores=SETTINGS[n]) for n in names
        }
        self.timer = timer
        self.setting = names[0]
        self.wrapper = self.wrappers[self.setting]
        self.choice: FastestChoice | None = None

    @property
    def use_tensor_cores(self) -> bool:
        """The setting run() uses: the planned winner, or the one fixed at construction."""
        return SETTINGS[self.setting]

    def _plan_and_choose(self, plan_one, probe, shape_class: tuple) -> None:
        """plan_one(wrapper) for every setting; keep the fastest probe(wrapper) (the only one, if fixed)."""
        planned, errors = {}, {}
        for name, wrapper in self.wrappers.items():
            try:
                plan_one(wrapper)
                planned[name] = wrapper
            except Exception as err:  # FlashInfer refuses this shape in this setting
                errors[name] = f"{type(err).__name__}: {err}"
        if not planned:
            raise RuntimeError(f"{type(self).__name__}: FlashInfer refused every setting: "
                               + "; ".join(f"{n}: {e}" for n, e in errors.items()))  # fmt: skip
        key = (type(self).__name__, str(self.device), *shape_class, tuple(planned))
        if len(planned) == 1:
            self.choice = FastestChoice(next(iter(planned)), {}, errors)
        elif self.timer is None and key in _CHOICES:
            self.choice = _CHOICES[key]
        elif self.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            # no timing inside a graph capture: FlashInfer's own advice, tensor cores for large GQA groups
            group = shape_class[0]
            self.choice = FastestChoice(_setting_name(group >= 4), {}, {"timing": "skipped inside a graph capture"})
        else:
            timer = self.timer or cuda_event_timer()
            found = pick_fastest({n: (lambda w=w: probe(w)) for n, w in planned.items()}, timer)
            self.choice = FastestChoice(found.winner, found.times_us, {**errors, **found.errors})
            if self.timer is None:
                _CHOICES[key] = self.choice
        self.setting = self.choice.winner
        self.wrapper = self.wrappers[self.setting]

    def choice_record(self) -> dict:
        """For result files: the winning setting, each setting's time (µs) and any setting's failure."""
        rec = {"use_tensor_cores": self.use_tensor_cores, "setting": self.setting}
        return rec | ({} if self.choice is None else self.choice.as_dict())


def _setting_name(use_tensor_cores: bool) -> str:
    return "tensor_cores" if use_tensor_cores else "cuda_cores"


class FlashInferVectorSparse(_TwoSettingDecode):
    """FlashInfer's page_size=1 decode over the selected rows: plan() once per selection, run() per query.

    Both use_tensor_cores settings are planned and the faster one runs (see _TwoSettingDecode).
    """

    def plan(
        self,
        indices: torch.Tensor,
        lengths: torch.Tensor | None,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        num_q_heads: int,
        scale: float,
        page_table: torch.Tensor | None = None,
    ) -> None:
        bsz, num_sel, k = indices.shape
        rows = folded_rows(indices, k_cache, num_q_heads, page_table)
        if lengths is None:
            counts = torch.full((bsz * num_sel,), k, dtype=torch.int32, device=indices.device)
            flat = rows.reshape(-1)
        else:
            counts = lengths.reshape(-1).to(torch.int32).clamp(0, k)
            flat = rows[torch.arange(k, device=indices.device) < counts.view(bsz, num_sel, 1)]
        indptr = torch.zeros(bsz * num_sel + 1, dtype=torch.int32, device=indices.device)
        indptr[1:] = torch.cumsum(counts, 0)
        # page_size 1: a request's length = (pages - 1) * 1 + last_page_len, so 1, or 0 for an empty row
        last = (counts > 0).to(torch.int32)
        self.k_rows, self.v_rows = single_row_view(k_cache), single_row_view(v_cache)
        self.shape = (bsz, num_q_heads, num_sel, k_cache.shape[-1])
        self.empty = (counts == 0).view(bsz, num_sel)
        group, d = num_q_heads // num_sel, k_cache.shape[-1]
        flat = flat.to(torch.int32)

        def plan_one(wrapper) -> None:
            wrapper.plan(indptr, flat, last, group, 1, d, 1, q_data_type=k_cache.dtype, kv_data_type=k_cache.dtype,
                         sm_scale=scale)  # fmt: skip

        probe_q = torch.randn(bsz * num_sel, group, d, device=k_cache.device).to(k_cache.dtype)
        probe = lambda wrapper: wrapper.run(probe_q, (self.k_rows, self.v_rows))
        self._plan_and_choose(plan_one, probe, (group, bsz * num_sel, d, k_cache.dtype, k.bit_length()))

    def run(self, q: torch.Tensor, return_lse: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        bsz, num_q_heads, num_sel, d = self.shape
        folded = q.reshape(bsz * num_sel, num_q_heads // num_sel, d)  # a group's heads are adjacent
        if not return_lse:
            return self.wrapper.run(folded, (self.k_rows, self.v_rows)).view(bsz, num_q_heads, d)
        out, lse = self.wrapper.run(folded, (self.k_rows, self.v_rows), return_lse=True)
        return out.view(bsz, num_q_heads, d), (lse * LN2).view(bsz, num_q_heads)


class FlashInferDense(_TwoSettingDecode):
    """FlashInfer's dense paged decode over every cached token: the baseline sparsity is measured against.

    Both use_tensor_cores settings are planned and timed on the shape, and the faster one runs, so every
    ratio against it is against FlashInfer's best dense decode (see _TwoSettingDecode).
    """

    def plan(
        self,
        page_table: torch.Tensor,
        seq_len: int,
        k_cache: torch.Tensor,
        num_q_heads: int,
        scale: float,
        v_cache: torch.Tensor | None = None,
    ) -> None:
        """page_table [B, pages]; caches [pages, page_size, Hkv, D]; every sequence holds seq_len tokens.

        v_cache (optional) is read by the timing runs; without it they read k_cache twice (same bytes).
        """
        bsz = page_table.shape[0]
        page_size, num_kv_heads, d = k_cache.shape[1], k_cache.shape[2], k_cache.shape[3]
        pages = math.ceil(seq_len / page_size)
        indptr = torch.arange(bsz + 1, dtype=torch.int32, device=page_table.device) * pages
        last = torch.full((bsz,), seq_len - (pages - 1) * page_size, dtype=torch.int32, device=page_table.device)
        table = page_table[:, :pages].reshape(-1).to(torch.int32).contiguous()

        def plan_one(wrapper) -> None:
            wrapper.plan(indptr, table, last, num_q_heads, num_kv_heads, d, page_size, q_data_type=k_cache.dtype,
                         kv_data_type=k_cache.dtype, sm_scale=scale)  # fmt: skip

        probe_q = torch.randn(bsz, num_q_heads, d, device=k_cache.device).to(k_cache.dtype)
        values = k_cache if v_cache is None else v_cache
        probe = lambda wrapper: wrapper.run(probe_q, (k_cache, values))
        group = num_q_heads // num_kv_heads
        shape_class = (group, bsz, num_kv_heads, d, page_size, k_cache.dtype, pages.bit_length())
        self._plan_and_choose(plan_one, probe, shape_class)

    def run(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor:
        return self.wrapper.run(q, (k_cache, v_cache))


def flashinfer_sparse_decode(q, k_cache, v_cache, indices, lengths, weights, scale, page_table, return_lse):
    """sparse_decode's flashinfer backend: plan and run in one call (host syncs; a baseline, not a fast path)."""
    if weights is not None:
        raise ValueError("sparse_decode: the flashinfer backend has no importance weights; use 'triton'.")
    runner = FlashInferVectorSparse(q.device)
    runner.plan(indices, lengths, k_cache, v_cache, q.shape[1], scale, page_table)
    out, lse = runner.run(q, return_lse=True)
    # An empty row: zeros and -inf, as the other backends give.
    empty = runner.empty.repeat_interleave(q.shape[1] // indices.shape[1], dim=1)
    out = torch.where(empty.unsqueeze(-1), torch.zeros_like(out), out)
    lse = torch.where(empty, torch.full_like(lse, float("-inf")), lse)
    return (out, lse) if return_lse else out

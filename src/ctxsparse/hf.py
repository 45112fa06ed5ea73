"""Sparse decoding inside any transformers causal LM, through the attention and mask interfaces."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any, Literal

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ctxsparse.attention.dispatch import sparse_attention
from ctxsparse.budget import Budget
from ctxsparse.fidelity import FidelityTrace, mass_recall, relative_error, selection_density
from ctxsparse.models import model_key
from ctxsparse.selectors.base import SelectionContext, Selector
from ctxsparse.selectors.registry import make_selector

IMPLEMENTATION = "ctxsparse"
PHASES = ("question", "decode")
_SESSION_ATTR = "_ctxsparse_session"


def _attention(module: torch.nn.Module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The registered attention function: dense through SDPA unless a session marks this call sparse."""
    session: SparseDecoding | None = getattr(module, _SESSION_ATTR, None)
    if session is None or not session.sparse_now:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    return session.attend(module, query, key, value, attention_mask, scaling, kwargs)


@functools.cache
def register() -> str:
    """Register the ctxsparse attention and mask functions with transformers (once per process)."""
    AttentionInterface.register(IMPLEMENTATION, _attention)
    # Always materialise the boolean mask: the sparse path reads visibility (padding, causality, windows,
    # unwritten static-cache slots) from it.
    AttentionMaskInterface.register(IMPLEMENTATION, functools.partial(sdpa_mask, allow_is_causal_skip=False))
    return IMPLEMENTATION


def check_model_supported(model: torch.nn.Module) -> None:
    """Refuse models whose attention does not go through transformers' attention interface."""
    supports = getattr(type(model), "_supports_attention_backend", False)
    if not supports or not hasattr(model, "set_attn_implementation"):
        raise TypeError(
            f"{type(model).__name__} does not route attention through transformers' AttentionInterface, so "
            "ctxsparse cannot make it sparse. Use a model family that does (Llama, Qwen2/3, Mistral, Gemma, ...)."
        )


def _visible(attention_mask: torch.Tensor | None, q_len: int, kv_len: int, batch: int, device) -> torch.Tensor:
    """Bool [B, 1, Tq, N] from whatever mask the model passed."""
    if attention_mask is None:
        rows = torch.arange(q_len, device=device).view(q_len, 1) + (kv_len - q_len)
        vis = torch.arange(kv_len, device=device).view(1, kv_len) <= rows
        return vis.view(1, 1, q_len, kv_len).expand(batch, 1, q_len, kv_len)
    mask = attention_mask[..., -kv_len:] if attention_mask.shape[-1] > kv_len else attention_mask
    if mask.dtype != torch.bool:
        mask = mask > torch.finfo(mask.dtype).min / 2
    return mask[:, :1].expand(batch, 1, q_len, kv_len)


class SparseDecoding:
    """One sparse-decoding session on one model; see `sparse_decoding`."""

    def __init__(
        self,
        model: torch.nn.Module,
        selector: Selector | str,
        budget: Budget,
        phase: Literal["question", "decode"] = "question",
        trace: bool = True,
        backend: str = "auto",
    ) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}; got {phase!r}.")
        if not isinstance(budget, Budget):
            raise TypeError(
                f"budget must be a ctxsparse.Budget, e.g. Budget(sparsity=10); got {type(budget).__name__}."
            )
        check_model_supported(model)
        self.model = model
        self.selector = make_selector(selector)
        self.budget = budget
        self.phase = phase
        self.backend = backend
        self.trace = FidelityTrace(enabled=trace)
        self.states: dict[int, dict[int, dict[str, Any]]] = {}
        self.sparse_now = phase == "question"
        self._dense_depth = 0
        self._forward_calls = 0
        self._model_key = model_key(model)
        self._num_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
        self._saved: str | None = None
        self._attention_modules: list[torch.nn.Module] = []
        self._hook = None

    # -- entering and leaving -------------------------------------------------------------------
    def __enter__(self) -> SparseDecoding:
        register()
        self._saved = self.model.config._attn_implementation
        self._attention_modules = [
            m for m in self.model.modules() if hasattr(m, "layer_idx") and hasattr(m, "config") and m is not self.model
        ]
        try:
            self.model.set_attn_implementation(IMPLEMENTATION)
            for m in self._attention_modules:
                setattr(m, _SESSION_ATTR, self)
            if self.phase == "decode":
                self._hook = self.model.register_forward_pre_hook(self._count_forward)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for m in self._attention_modules:
            if hasattr(m, _SESSION_ATTR):
                delattr(m, _SESSION_ATTR)
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._saved is not None and self.model.config._attn_implementation != self._saved:
            self.model.set_attn_implementation(self._saved)
        self._saved = None

    # -- phases ---------------------------------------------------------------------------------
    def _count_forward(self, module, args) -> None:
        """phase='decode': the first forward call of the block is the prompt's prefill, every later one sparse."""
        self._forward_calls += 1
        if self._dense_depth == 0:
            self.sparse_now = self._forward_calls > 1

    @contextlib.contextmanager
    def dense(self) -> Iterator[None]:
        """Forward calls inside this block run dense (used to prefill the context)."""
        before = self.sparse_now
        self._dense_depth += 1
        self.sparse_now = False
        try:
            yield
        finally:
            self._dense_depth -= 1
            self.sparse_now = before

    @contextlib.contextmanager
    def sparse(self) -> Iterator[None]:
        """Forward calls inside this block run sparse, whatever the phase."""
        before = self.sparse_now
        self.sparse_now = True
        try:
            yield
        finally:
            self.sparse_now = before

    # -- the sparse attention call --------------------------------------------------------------
    def attend(self, module, query, key, value, attention_mask, scaling, kwargs):
        """Select, then attend over the selection; returns ([B, Tq, Hq, D], None) like SDPA."""
        if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
            raise NotImplementedError(
                "This model uses attention logit soft-capping or sink logits, which ctxsparse's sparse path does "
                "not implement; run it dense or pick another model."
            )
        b, hq, tq, d = query.shape
        n = key.shape[2]
        if n == 0:
            raise ValueError("The KV cache is empty: prefill a context before sparse decoding.")
        if not bool(torch.isfinite(query).all()):
            raise FloatingPointError(
                f"Queries at layer {module.layer_idx} contain NaN or inf; check the model's dtype (try float32) "
                "and inputs."
            )
        scale = scaling if scaling is not None else d**-0.5
        layer = int(module.layer_idx)
        ctx = SelectionContext(
            query=query,
            keys=key,
            visible=_visible(attention_mask, tq, n, b, query.device),
            scale=scale,
            layer_idx=layer,
            num_layers=self._num_layers,
            model_key=self._model_key,
            states=self.states.setdefault(layer, {}),
        )
        counts = ctx.visible_counts()
        selection = self.selector.select(ctx, self.budget.tokens_for_tensor(counts))
        # A selector that computed the dense logits (the oracles) saves the backend from re-reading keys.
        out = sparse_attention(
            query, key, value, selection, scale, backend=self.backend, logits=ctx.cached_scores, check=False
        )
        if self.trace.enabled:
            dense_out = torch.matmul(ctx.probs().view(b, key.shape[1], -1, n), value.float()).view(b, hq, tq, d)
            self.trace.record_layer(
                layer,
                density=selection_density(selection, counts),
                mass_recall=mass_recall(selection, ctx.probs()),
                output_error=relative_error(out, dense_out),
            )
        return out.transpose(1, 2).contiguous(), None


def sparse_decoding(
    model: torch.nn.Module,
    selector: Selector | str,
    budget: Budget,
    phase: Literal["question", "decode"] = "question",
    trace: bool = True,
    backend: str = "auto",
) -> SparseDecoding:
    """Context manager that makes `model` decode sparsely; yields the session (its `.trace` holds fidelity).

    phase='question': every forward call in the block runs sparse except inside `session.dense()` (prefill
    the context there). phase='decode': the block's first forward call (the prompt's prefill, as in
    `model.generate`) runs dense and every later call sparse. Leaving the block always restores the model's
    original attention implementation, also on exceptions.
    """
    return SparseDecoding(model, selector, budget, phase=phase, trace=trace, backend=backend)

"""How the engine takes over attention inside the model's own modules: an AttentionInterface function.

The model keeps doing all the non-attention math (embeddings, norms, projections, rotary, MLP, head);
each attention layer hands its query and the new token's key/value to the engine's current attention
callable, which stores them in the engine's cache and attends over it. No mask is built: this
implementation registers no mask function, so transformers skips mask creation (the engine knows each
row's length itself).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
from transformers import AttentionInterface

IMPLEMENTATION = "ctxsparse_engine"
_ATTR = "_ctxsparse_engine_attend"
SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")

# attend(layer, query [B, Hq, T, D], key [B, Hkv, T, D], value, scale) -> [B, Hq, T, D]
Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def _engine_attention(module: torch.nn.Module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    attend: Attend | None = getattr(module, _ATTR, None)
    if attend is None:
        raise RuntimeError(
            "This model's attention is set to the ctxsparse engine's, but no engine step is running; call the "
            "model through Engine.generate, or restore it with model.set_attn_implementation('sdpa')."
        )
    if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
        raise NotImplementedError("The ctxsparse engine does not implement soft-capped or sink-logit attention.")
    scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
    out = attend(int(module.layer_idx), query, key, value, scale)
    return out.transpose(1, 2), None


@functools.cache
def register() -> str:
    """Register the engine's attention function with transformers (once per process)."""
    AttentionInterface.register(IMPLEMENTATION, _engine_attention)
    return IMPLEMENTATION


def check_family(model: torch.nn.Module) -> None:
    """Refuse a model the engine cannot serve, naming what it can."""
    cfg = model.config
    family = getattr(cfg, "model_type", "")
    supported = ", ".join(SUPPORTED_FAMILIES)
    if family not in SUPPORTED_FAMILIES:
        raise TypeError(
            f"The ctxsparse engine serves the model families {supported}; got {family!r} "
            f"({type(model).__name__}). Use ctxsparse.generation (the eager path) for other families."
        )
    if not getattr(type(model), "_supports_attention_backend", False) or not hasattr(model, "set_attn_implementation"):
        raise TypeError(f"{type(model).__name__} does not route attention through transformers' AttentionInterface.")
    for name in ("attn_logit_softcapping", "final_logit_softcapping"):
        if getattr(cfg, name, None):
            raise TypeError(f"The ctxsparse engine does not serve soft-capped models ({name} is set).")


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's attention layers (modules with a layer_idx and a config)."""
    return [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "config") and m is not model]


@contextlib.contextmanager
def attached(model: torch.nn.Module, attend: Attend) -> Iterator[None]:
    """Route the model's attention to `attend` inside the block; the model is restored on exit, also on errors."""
    register()
    saved = model.config._attn_implementation
    modules = attention_modules(model)
    try:
        model.set_attn_implementation(IMPLEMENTATION)
        for m in modules:
            setattr(m, _ATTR, attend)
        yield
    finally:
        for m in modules:
            if hasattr(m, _ATTR):
                delattr(m, _ATTR)
        if model.config._attn_implementation != saved:
            model.set_attn_implementation(saved)

"""Shared cases for the indexer selector tests: random caches with invisible slots, and decoding steps."""

from __future__ import annotations

import torch

from ctxsparse.attention import dense_attention_reference, sparse_attention_reference
from ctxsparse.selectors import Calibration, SelectionContext, Selector

PAD = 3  # left padding of batch row 1


def make_visible(b: int, tq: int, length: int, n: int) -> torch.Tensor:
    """Bool [B, 1, Tq, N]: causal rows ending at length-1, row 1 left-padded, slots >= length unwritten."""
    pos = torch.arange(n)
    last = length - tq + torch.arange(tq)
    vis = (pos.view(1, -1) <= last.view(-1, 1)).expand(b, 1, tq, n).clone()
    if b > 1:
        vis[1, :, :, :PAD] = False
    return vis


def make_ctx(
    b: int = 2,
    hq: int = 4,
    hkv: int = 2,
    tq: int = 2,
    n: int = 48,
    d: int = 16,
    seed: int = 0,
    extra: int = 5,
    model_key: str = "test-model",
    num_layers: int = 2,
    layer_idx: int = 0,
) -> tuple[SelectionContext, torch.Tensor]:
    """A context over a static cache of n + extra slots, of which n are written; and the values."""
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(b, hq, tq, d, generator=gen)
    keys = torch.randn(b, hkv, n + extra, d, generator=gen)
    values = torch.randn(b, hkv, n + extra, d, generator=gen)
    ctx = SelectionContext(
        query=query,
        keys=keys,
        visible=make_visible(b, tq, n, n + extra),
        scale=d**-0.5,
        layer_idx=layer_idx,
        num_layers=num_layers,
        model_key=model_key,
    )
    return ctx, values


def full_budget(ctx: SelectionContext) -> torch.Tensor:
    return ctx.visible_counts()


def assert_exact_at_full_budget(selector: Selector, ctx: SelectionContext, values: torch.Tensor) -> None:
    """Budget >= N reproduces dense attention, and no invisible position is selected."""
    sel = selector.select(ctx, full_budget(ctx))
    mask = sel.as_mask(ctx.num_keys)
    assert not (mask & ~ctx.visible).any(), "an invisible position was selected"
    out = sparse_attention_reference(ctx.query, ctx.keys, values, sel, scale=ctx.scale)
    dense = dense_attention_reference(ctx.query, ctx.keys, values, ctx.visible, scale=ctx.scale)
    torch.testing.assert_close(out, dense, atol=1e-5, rtol=1e-5)


def decode_steps(
    selector: Selector, prefill: int = 37, steps: int = 6, static: bool = False, seed: int = 1, **shape: int
) -> tuple[list[SelectionContext], list]:
    """Run `selector` over successive decoding steps sharing one state; returns contexts and selections.

    The cache grows by one key per step (a dynamic cache whose N is the written length, or a static cache
    of fixed N when static=True); each step has a fresh single query row.
    """
    b, hq, hkv, d = shape.get("b", 2), shape.get("hq", 4), shape.get("hkv", 2), shape.get("d", 16)
    gen = torch.Generator().manual_seed(seed)
    total = prefill + steps
    keys = torch.randn(b, hkv, total + 4, d, generator=gen)
    states: dict = {}
    contexts, selections = [], []
    for step in range(steps):
        length = prefill + step + 1
        n = total + 4 if static else length
        ctx = SelectionContext(
            query=torch.randn(b, hq, 1, d, generator=gen),
            keys=keys[:, :, :n],
            visible=make_visible(b, 1, length, n),
            scale=d**-0.5,
            layer_idx=1,
            num_layers=2,
            model_key="test-model",
            states=states,
        )
        k = torch.full((b, 1, 1), 9, dtype=torch.int64)
        selections.append(selector.select(ctx, k))
        contexts.append(ctx)
    return contexts, selections


def fresh(ctx: SelectionContext) -> SelectionContext:
    """The same call with no prior state: what a rebuild from the whole cache sees."""
    return SelectionContext(
        query=ctx.query,
        keys=ctx.keys,
        visible=ctx.visible,
        scale=ctx.scale,
        layer_idx=ctx.layer_idx,
        num_layers=ctx.num_layers,
        model_key=ctx.model_key,
    )


def same_selection(a, b) -> bool:
    """Same selected sets per row (order-insensitive) and same per-position weights."""
    n = int(max(a.indices.max(), b.indices.max())) + 1
    if not torch.equal(a.as_mask(n), b.as_mask(n)):
        return False
    if (a.weights is None) != (b.weights is None):
        return False
    if a.weights is None:
        return True
    return torch.allclose(_dense_weights(a, n), _dense_weights(b, n))


def _dense_weights(sel, n: int) -> torch.Tensor:
    w = torch.zeros(*sel.indices.shape[:3], n)
    return w.scatter_add(-1, sel.indices.long(), torch.where(sel.valid_mask(), sel.weights, 0.0))


def random_calibration(
    model_key: str = "test-model", num_layers: int = 2, hkv: int = 2, d: int = 16, seed: int = 0
) -> Calibration:
    """A valid calibration with random channel rankings (for selector tests that need one)."""
    gen = torch.Generator().manual_seed(seed)
    channels = [[torch.randperm(d, generator=gen).tolist() for _ in range(hkv)] for _ in range(num_layers)]
    return Calibration(model_key, num_layers, hkv, d, channels, tokens=0, source="test")

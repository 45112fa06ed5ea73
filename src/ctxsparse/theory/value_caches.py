"""Theorem 1 on a real model: how large the null space of [V^T; 1^T] is on its value caches."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ctxsparse.prose import builtin_text
from ctxsparse.theory.construction import as_value_matrix, augmented_rank, collision, verify


@dataclass(frozen=True)
class HeadRecord:
    """Theorem 1 on one (layer, kv head): the null space of [V^T; 1^T], and a collision when N > d + 1."""

    layer: int
    kv_head: int
    n: int
    d: int
    rank: int
    null_dim: int
    max_abs_diff: float | None  # None when N <= d + 1 (the theorem does not apply)
    tv: float | None
    passed: bool | None

    @property
    def share(self) -> float:
        """null_dim / N: the fraction of the N degrees of freedom in a that the output cannot see."""
        return self.null_dim / self.n if self.n else 0.0


def default_prose(sentences: int = 160, seed: int = 0) -> str:
    """Deterministic, varied English prose (160 sentences is about 1,600 tokens)."""
    return builtin_text(num_words=sentences * 10, seed=seed)


def _value_tensors(cache: object) -> list[torch.Tensor]:
    """Per-layer values [B, Hkv, N, d]: transformers 5.x `cache.layers[i].values`, or legacy tuples."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [layer.values for layer in layers]
    if isinstance(cache, (tuple, list)):
        return [entry[1] for entry in cache]
    raise ValueError(f"Unsupported cache type {type(cache).__name__}: expected a DynamicCache or tuples.")


def measure_model(
    model: torch.nn.Module,
    tokenizer: object | None = None,
    text: str | None = None,
    tokens: int = 1024,
    input_ids: torch.Tensor | None = None,
    seed: int = 0,
    rtol: float | None = None,
) -> list[HeadRecord]:
    """Theorem 1 on a model's real value caches: one record per (layer, kv head).

    Runs one dense forward pass over input_ids (or over `text`, default `default_prose()`, tokenised and cut
    to `tokens`), then for each layer's value cache V [N, d] per kv head reports rank([V^T; 1^T]), the
    null-space dimension N - rank, and a concrete collision (two distributions, one output) when N > d + 1.
    """
    if input_ids is None:
        if tokenizer is None:
            raise ValueError("measure_model needs input_ids, or a tokenizer to encode the text.")
        if tokens < 1:
            raise ValueError(f"tokens must be >= 1; got {tokens}.")
        text = default_prose(sentences=max(16, tokens // 6)) if text is None else text
        input_ids = tokenizer(text, return_tensors="pt").input_ids[:, :tokens]
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be one non-empty sequence [1, N]; got {tuple(input_ids.shape)}.")
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(input_ids=input_ids.to(device), use_cache=True)
    if out.past_key_values is None:
        raise RuntimeError("The model returned no cache: it must support use_cache=True.")
    records = []
    for layer, vals in enumerate(_value_tensors(out.past_key_values)):
        for h in range(vals.shape[1]):
            v = as_value_matrix(vals[0, h])  # [N, d]
            n, d = v.shape
            if n > d + 1:
                c = collision(v, seed=seed + 1000 * layer + h, rtol=rtol)
                rank, diff, tv, ok = c.rank, c.max_abs_diff, c.tv, verify(c).passed
            else:
                rank, diff, tv, ok = augmented_rank(v, rtol), None, None, None
            records.append(HeadRecord(layer, h, n, d, rank, n - rank, diff, tv, ok))
    return records


def _span(xs: list[int]) -> str:
    lo, hi = min(xs), max(xs)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def format_model_table(records: list[HeadRecord]) -> str:
    """Per-layer table; consecutive layers alike in kv heads, N, d, rank and null dim share one row.

    max |o1-o2| is the worst over the row's heads, min TV the closest pair, share the smallest null share.
    """
    if not records:
        return "(no layers)"
    by_layer: dict[int, list[HeadRecord]] = {}
    for r in records:
        by_layer.setdefault(r.layer, []).append(r)

    def shape_key(recs: list[HeadRecord]) -> tuple:
        ranks, nulls = _span([r.rank for r in recs]), _span([r.null_dim for r in recs])
        return (len(recs), recs[0].n, recs[0].d, ranks, nulls)

    groups: list[tuple[list[int], list[HeadRecord]]] = []
    for layer, recs in by_layer.items():
        if groups and groups[-1][0][-1] == layer - 1 and shape_key(by_layer[layer - 1]) == shape_key(recs):
            groups[-1][0].append(layer)
            groups[-1][1].extend(recs)
        else:
            groups.append(([layer], list(recs)))

    lines = [
        f"{'layers':>7} {'kv heads':>8} {'N':>6} {'d':>4} {'rank':>7} {'null dim':>9} {'share':>6} "
        f"{'max |o1-o2|':>11} {'min TV':>7}"
    ]
    for layers, recs in groups:
        heads, n, d, rank_s, null_s = shape_key(by_layer[layers[0]])
        diffs = [r.max_abs_diff for r in recs if r.max_abs_diff is not None]
        tvs = [r.tv for r in recs if r.tv is not None]
        diff_s = f"{max(diffs):.1e}" if diffs else "n/a"
        tv_s = f"{min(tvs):.4f}" if tvs else "n/a"
        share = min(r.share for r in recs)
        lines.append(
            f"{_span(layers):>7} {heads:>8} {n:>6} {d:>4} {rank_s:>7} {null_s:>9} {share:>6.1%} {diff_s:>11} {tv_s:>7}"
        )
    return "\n".join(lines)


def model_summary(records: list[HeadRecord]) -> str:
    """One line: how many heads admit a verified collision out of those where the theorem applies."""
    applies = [r for r in records if r.passed is not None]
    passed = sum(bool(r.passed) for r in applies)
    skipped = len(records) - len(applies)
    line = f"collisions verified on {passed}/{len(applies)} (layer, kv head) value caches"
    if skipped:
        line += f"; {skipped} with N <= d + 1 skipped (theorem does not apply)"
    return line

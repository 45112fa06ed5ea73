"""Ground-truth sparse attention in torch: gather the selected keys/values, softmax in fp32."""

from __future__ import annotations

import torch

from ctxsparse.selection import Selection


def check_attention_inputs(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Shape checks shared by the backends; errors say what to change."""
    if query.dim() != 4 or keys.dim() != 4 or values.dim() != 4:
        raise ValueError(
            "query, keys and values must be [B, H, T, D]; got "
            f"{tuple(query.shape)}, {tuple(keys.shape)}, {tuple(values.shape)}."
        )
    if keys.shape[2] == 0:
        raise ValueError("The KV cache is empty: prefill a context before running sparse attention.")
    if query.shape[1] % keys.shape[1]:
        raise ValueError(
            f"{query.shape[1]} query heads are not a multiple of {keys.shape[1]} kv heads: check the model's config."
        )
    if keys.shape != values.shape:
        raise ValueError(f"keys {tuple(keys.shape)} and values {tuple(values.shape)} must have the same shape.")


def check_selection_inputs(query: torch.Tensor, selection: Selection, num_keys: int) -> None:
    """Refuse what would give wrong numbers silently or an index error deep inside: selected positions
    outside [0, num_keys), lengths outside [0, k], and NaN or infinite queries. Costs host syncs, so the
    model path (whose selectors make valid selections) skips it."""
    idx = selection.indices
    if selection.lengths is not None and selection.lengths.numel():
        low, high = int(selection.lengths.min()), int(selection.lengths.max())
        if low < 0 or high > selection.k:
            raise ValueError(f"Selection.lengths must lie in [0, k={selection.k}]; got range [{low}, {high}].")
    valid = selection.valid_mask()
    if idx.numel() and bool(valid.any()):
        chosen = idx[valid]
        low, high = int(chosen.min()), int(chosen.max())
        if low < 0 or high >= num_keys:
            raise IndexError(
                f"Selection indices must lie in [0, {num_keys}) (positions in the KV cache, within [0, {num_keys})); "
                f"got range [{low}, {high}]. Clamp or drop the positions outside it (slots past `lengths` are ignored)."
            )
    if not bool(torch.isfinite(query).all()):
        bad = int((~torch.isfinite(query)).sum())
        raise ValueError(
            f"query holds {bad} NaN or infinite values; attention over them would be meaningless. Check the "
            "model's activations (a float16 overflow? try bfloat16 or float32)."
        )


def sparse_attention_reference(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    selection: Selection,
    scale: float | None = None,
    return_lse: bool = False,
    logits: torch.Tensor | None = None,
    check_indices: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention of each query row over only its selected positions.

    query [B, Hq, Tq, D]; keys/values [B, Hkv, N, D]; selection at q_head or kv_head granularity.
    out[b,h,t] = sum_j w_j exp(s_j - m) v_j / sum_j w_j exp(s_j - m) over the valid selected slots j,
    with s_j = scale * q·k_j and w_j the importance weight (1 when absent). Returns [B, Hq, Tq, D] in
    query's dtype, and the natural-log log-sum-exp [B, Hq, Tq] (fp32) on request.
    logits: optional dense scaled q·K [B, Hq, Tq, N] already computed (by an oracle selector); the selected
    logits are then gathered from it instead of re-reading the selected keys.
    check_indices=False skips check_selection_inputs (host syncs) for selections made by ctxsparse's selectors.
    """
    check_attention_inputs(query, keys, values)
    b, hq, tq, d = query.shape
    hkv, n = keys.shape[1], keys.shape[2]
    scale = d**-0.5 if scale is None else scale
    sel = selection.to_query_heads(hq)
    if tuple(sel.indices.shape[:3]) != (b, hq, tq):
        raise ValueError(
            f"Selection indices {tuple(selection.indices.shape)} do not fit query {tuple(query.shape)} "
            f"with {hkv} kv heads."
        )
    if check_indices:
        check_selection_inputs(query, sel, n)
    idx = sel.indices.to(torch.int64)
    if sel.lengths is not None:
        idx = idx.clamp(0, n - 1)  # slots past `lengths` may hold anything; they are masked out below
    g = hq // hkv
    # Row of each selected token in the caches viewed as [B*Hkv*N, D]; query head h reads kv head h // g,
    # so nothing is copied per query head.
    head_kv = torch.arange(hq, device=idx.device) // g
    base = (torch.arange(b, device=idx.device).view(b, 1) * hkv + head_kv.view(1, hq)) * n
    rows = (idx + base.view(b, hq, 1, 1)).reshape(-1)
    v_sel = values.reshape(b * hkv * n, d).index_select(0, rows).view(b, hq, tq, sel.k, d).float()
    if logits is not None:
        logits = torch.gather(logits.float(), -1, idx)
    else:
        k_sel = keys.reshape(b * hkv * n, d).index_select(0, rows).view(b, hq, tq, sel.k, d).float()
        logits = torch.einsum("bhtd,bhtkd->bhtk", query.float(), k_sel) * scale
    if sel.lengths is not None or sel.weights is not None:
        valid = sel.valid_mask()
        if sel.weights is not None:
            # w e^s = e^(s + log w): weights enter numerator and denominator alike.
            valid = valid & (sel.weights > 0)
            logits = logits + torch.log(sel.weights.float().clamp_min(1e-38))
        logits = logits.masked_fill(~valid, float("-inf"))
    if return_lse:
        lse = torch.logsumexp(logits, dim=-1)
        probs = torch.exp(logits - lse.unsqueeze(-1)).nan_to_num(0.0)
    else:
        probs = torch.softmax(logits, dim=-1).nan_to_num_(0.0)  # an empty row gives zeros, not NaN
    out = torch.matmul(probs.unsqueeze(-2), v_sel).squeeze(-2).to(query.dtype)
    return (out, lse) if return_lse else out


def dense_attention_reference(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    visible: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Dense attention in fp32 with a boolean visibility mask [B, 1|Hq, Tq, N]; the comparison baseline."""
    check_attention_inputs(query, keys, values)
    g = query.shape[1] // keys.shape[1]
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    kk = keys.float().repeat_interleave(g, dim=1)
    vv = values.float().repeat_interleave(g, dim=1)
    logits = torch.matmul(query.float(), kk.transpose(-1, -2)) * scale
    if visible is not None:
        logits = logits.masked_fill(~visible, float("-inf"))
    probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)
    return torch.matmul(probs, vv).to(query.dtype)

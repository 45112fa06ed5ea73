"""Double Sparsity: approximate q·k from a few calibrated key channels, then take the top-k of that.

A label cache holds keys[..., channels] for the r channels of each kv head that carry most of |q·k|
(found offline by `ctxsparse calibrate`); the approximate logit of position n is
q[channels] · label[n] · scale, optionally from labels quantized to 4 or 8 bits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ctxsparse.selection import Selection, check_granularity
from ctxsparse.selectors.base import NEG_INF, SelectionContext, Selector, topk_selection
from ctxsparse.selectors.calibration import Calibration, load_calibration
from ctxsparse.selectors.key_index import mark_indexed, pad_positions, pending_start

LABEL_BITS = (None, 4, 8)
AGGREGATES = ("prob_sum", "logit_max", "logit_mean")


def quantize_labels(labels: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token symmetric quantization of labels [..., r]: int8 codes in [-(2^(bits-1)-1), 2^(bits-1)-1]
    and fp32 scales [..., 1] with labels ≈ codes * scales (4-bit codes are stored one per int8)."""
    qmax = 2 ** (bits - 1) - 1
    scales = labels.abs().amax(-1, keepdim=True) / qmax
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round(labels / scales).clamp(-qmax, qmax).to(torch.int8)
    return codes, scales


@dataclass
class DoubleSparsity(Selector):
    """Top-k over approximate logits from `channels` calibrated channels per kv head.

    calibration: None (the default file of the session's model key, see `ctxsparse calibrate`), a path
    to a calibration file, or a Calibration. label_bits: None (fp32 labels), 4 or 8.
    aggregate (kv_head only): how a group's approximate logits are combined, as in OracleTopK:
    'prob_sum' (softmax per query head, summed; the default), 'logit_max' or 'logit_mean'.
    State: the label cache, appended for new positions only.
    """

    channels: int = 16
    label_bits: int | None = None
    calibration: str | os.PathLike[str] | Calibration | None = None
    granularity: str = "q_head"
    aggregate: str = "prob_sum"
    name = "double_sparsity"
    incremental_state = True  # indexes the cache as tokens are appended
    _loaded: dict[str, Calibration] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 1:
            raise ValueError(f"DoubleSparsity channels must be a positive integer (e.g. 16); got {self.channels!r}.")
        if self.label_bits not in LABEL_BITS:
            raise ValueError(f"DoubleSparsity label_bits must be one of {LABEL_BITS}; got {self.label_bits!r}.")
        if self.calibration is not None and not isinstance(self.calibration, (str, os.PathLike, Calibration)):
            raise TypeError(
                "DoubleSparsity calibration must be None, a file path or a Calibration; "
                f"got {type(self.calibration).__name__}."
            )
        check_granularity(self.granularity)
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"DoubleSparsity aggregate must be one of {AGGREGATES}; got {self.aggregate!r}.")

    def resolve_calibration(self, ctx: SelectionContext) -> Calibration:
        """The calibration for ctx's model, checked against its layers, kv heads and head_dim."""
        if isinstance(self.calibration, Calibration):
            cal = self.calibration
        else:
            where = ctx.model_key if self.calibration is None else os.fspath(self.calibration)
            if where not in self._loaded:
                self._loaded[where] = load_calibration(ctx.model_key, self.calibration)
            cal = self._loaded[where]
        cal.check(ctx.model_key, ctx.num_layers, ctx.num_kv_heads, ctx.keys.shape[-1])
        if self.channels > cal.head_dim:
            raise ValueError(f"DoubleSparsity channels={self.channels} exceeds head_dim={cal.head_dim}; lower it.")
        return cal

    def label_cache(self, ctx: SelectionContext) -> tuple[torch.Tensor, torch.Tensor]:
        """(channels int64 [Hkv, r], labels fp32 [B, Hkv, cache_len, r]), updated for new positions only."""
        st = ctx.state(self)
        n = ctx.cache_len
        start = pending_start(st, ctx.keys, n)
        if "channels" not in st:
            cal = self.resolve_calibration(ctx)
            st["channels"] = cal.channels_for(ctx.layer_idx, self.channels, ctx.keys.device)
        chan = st["channels"]
        if start < n or "labels" not in st:
            self._append(st, ctx.keys[:, :, start:n], chan)
            mark_indexed(st, ctx.keys, n)
        if self.label_bits is None:
            return chan, st["labels"]
        return chan, st["labels"].float() * st["scales"]

    def _append(self, st: dict[str, Any], new_keys: torch.Tensor, chan: torch.Tensor) -> None:
        b, h, m, _ = new_keys.shape
        index = chan.view(1, h, 1, -1).expand(b, h, m, -1)
        labels = new_keys.float().gather(-1, index)
        parts = {"labels": labels}
        if self.label_bits is not None:
            parts["labels"], parts["scales"] = quantize_labels(labels, self.label_bits)
        for key, value in parts.items():
            st[key] = torch.cat([st[key], value], dim=2) if key in st else value

    def approx_scores(self, ctx: SelectionContext) -> torch.Tensor:
        """Approximate scaled logits, fp32 [B, H, Tq, N] at self.granularity, -inf where invisible."""
        chan, labels = self.label_cache(ctx)
        b, hq, t, _ = ctx.query.shape
        hkv, g, r = ctx.num_kv_heads, ctx.group_size, chan.shape[-1]
        q = ctx.query.float().reshape(b, hkv, g * t, -1)
        q = q.gather(-1, chan.view(1, hkv, 1, r).expand(b, hkv, g * t, r))
        approx = (q @ labels.transpose(-1, -2)) * ctx.scale  # [B, Hkv, g*Tq, n]
        approx = pad_positions(approx.reshape(b, hq, t, -1), ctx.num_keys, NEG_INF)
        approx = approx.masked_fill(~ctx.visible, NEG_INF)
        if self.granularity == "q_head":
            return approx
        grouped = approx.view(b, hkv, g, t, -1)
        if self.aggregate == "prob_sum":
            agg = torch.softmax(grouped, dim=-1).nan_to_num(0.0).sum(2)
        elif self.aggregate == "logit_max":
            agg = grouped.amax(2)
        else:
            agg = grouped.mean(2)
        return agg.masked_fill(~ctx.visible, NEG_INF)

    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        return topk_selection(self.approx_scores(ctx), k, self.allowed(ctx, exclude))

"""SimHash sampling (MagicPIG-like): keys that share a hash bucket with the query, importance-weighted.

Each of `tables` tables hashes a vector to `bits` sign bits of random hyperplane projections. For
vectors at angle theta one bit agrees with probability 1 - theta/pi, so a key collides with the query
in at least one table with probability p = 1 - (1 - (1 - theta/pi)^bits)^tables. A key's inclusion
therefore follows p over the random hyperplanes, and weighting each candidate by 1/p (Horvitz-Thompson)
makes the weighted softmax sums unbiased over the hyperplane draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ctxsparse.selection import Selection, check_granularity
from ctxsparse.selectors.base import NEG_INF, SelectionContext, Selector
from ctxsparse.selectors.key_index import mark_indexed, pad_positions, pending_start

MAX_BITS = 30


def collision_probability(cos: torch.Tensor, bits: int, tables: int) -> torch.Tensor:
    """P(collide in >= 1 of `tables` tables of `bits` bits) for vectors with cosine similarity `cos`."""
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    one_table = (1.0 - theta / math.pi) ** bits
    return 1.0 - (1.0 - one_table) ** tables


@dataclass
class LSHSampling(Selector):
    """Candidates are keys colliding with the query in at least one table, most collisions first.

    Up to k candidates are read per row, ranked by the number of colliding tables (ties: newest first);
    each gets weight 1/p with p its collision probability at the exact query-key angle. When more than k
    keys collide the ranking truncates the candidate set, so the estimate is importance-weighted but no
    longer exactly unbiased; keys colliding in no table are never read, so rows may read fewer than k.
    A row whose budget covers all its allowed positions reads them all with weight 1 (inclusion is then
    certain), which is exact. At kv_head a key is a candidate of the group when it collides with any of
    its query heads; counts are summed over the group and p is the largest of the heads' probabilities.
    Hyperplanes are drawn from `seed` and the layer index; key signatures are appended incrementally.
    """

    bits: int = 8
    tables: int = 16
    seed: int = 0
    granularity: str = "q_head"
    name = "lsh"
    incremental_state = True  # hash codes appended for new positions only

    def __post_init__(self) -> None:
        for what, value, top in (("bits", self.bits, MAX_BITS), ("tables", self.tables, 1024)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ValueError(f"LSHSampling {what} must be an integer in [1, {top}]; got {value!r}.")
        check_granularity(self.granularity)

    def hyperplanes(self, layer_idx: int, dim: int, device: torch.device | str) -> torch.Tensor:
        """Fp32 [D, tables * bits] random Gaussian hyperplane normals of one layer, fixed by the seed."""
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + layer_idx * 7919 + dim)
        return torch.randn(dim, self.tables * self.bits, generator=gen).to(device)

    def signatures(self, x: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
        """Int64 [..., tables] bucket ids of vectors x [..., D]: their sign bits packed per table."""
        signs = (x.float().reshape(-1, x.shape[-1]) @ planes > 0).to(torch.int64)
        signs = signs.view(*x.shape[:-1], self.tables, self.bits)
        powers = 2 ** torch.arange(self.bits, device=x.device, dtype=torch.int64)
        return (signs * powers).sum(-1)

    def key_signatures(self, ctx: SelectionContext) -> torch.Tensor:
        """Int64 [B, Hkv, cache_len, tables] signatures of the cached keys, hashed once per position."""
        st = ctx.state(self)
        n = ctx.cache_len
        start = pending_start(st, ctx.keys, n)
        if "planes" not in st:
            st["planes"] = self.hyperplanes(ctx.layer_idx, ctx.keys.shape[-1], ctx.keys.device)
        if start < n or "codes" not in st:
            codes = self.signatures(ctx.keys[:, :, start:n], st["planes"])
            st["codes"] = torch.cat([st["codes"], codes], dim=2) if "codes" in st else codes
            mark_indexed(st, ctx.keys, n)
        return st["codes"]

    def collisions(self, ctx: SelectionContext) -> torch.Tensor:
        """Int [B, Hq, Tq, N]: in how many tables each key shares the query's bucket (0 past the index)."""
        codes = self.key_signatures(ctx)
        b, hq, t, d = ctx.query.shape
        hkv, g = ctx.num_kv_heads, ctx.group_size
        q_codes = self.signatures(ctx.query, ctx.state(self)["planes"]).view(b, hkv, g, t, self.tables)
        counts = torch.zeros(b, hkv, g, t, codes.shape[2], dtype=torch.int32, device=codes.device)
        for table in range(self.tables):
            counts += q_codes[..., table, None] == codes[:, :, None, None, :, table]
        return pad_positions(counts.view(b, hq, t, -1), ctx.num_keys, 0)

    def _weights(self, ctx: SelectionContext, indices: torch.Tensor) -> torch.Tensor:
        """1 / collision probability of each selected key, [B, H, Tq, k] at self.granularity."""
        b, hq, t, d = ctx.query.shape
        hkv, g, k = ctx.num_kv_heads, ctx.group_size, indices.shape[-1]
        q = torch.nn.functional.normalize(ctx.query.float(), dim=-1).view(b, hkv, g, t, d)
        reps = 1 if self.granularity == "kv_head" else g
        idx = indices.to(torch.int64).reshape(b, hkv, reps * t * k, 1).expand(-1, -1, -1, d)
        keys = torch.nn.functional.normalize(ctx.keys.gather(2, idx).float(), dim=-1)
        if self.granularity == "kv_head":
            qq = q.transpose(2, 3).reshape(-1, g, d)
            cos = torch.bmm(qq, keys.view(-1, k, d).transpose(1, 2)).view(b, hkv, t, g, k)
            p = collision_probability(cos, self.bits, self.tables).amax(3)
        else:
            cos = (keys.view(b, hq, t, k, d) * q.reshape(b, hq, t, 1, d)).sum(-1)
            p = collision_probability(cos, self.bits, self.tables)
        return 1.0 / p.clamp_min(1e-12)

    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        allowed = self.allowed(ctx, exclude)
        b, h, t, n = allowed.shape
        counts = self.collisions(ctx)
        if self.granularity == "kv_head":
            counts = counts.view(b, h, -1, t, n).sum(2)
        available = allowed.sum(-1)
        budget = torch.minimum(k.expand(b, h, t), available)
        certain = budget >= available  # the budget covers the row: read everything, weight 1
        candidate = allowed & ((counts > 0) | certain.unsqueeze(-1))
        lengths = torch.minimum(budget, candidate.sum(-1))
        pos = torch.arange(n, device=allowed.device, dtype=torch.float64)
        priority = (counts.double() * (n + 1) + pos).masked_fill(~candidate, NEG_INF)
        kmax = min(max(int(lengths.max()) if lengths.numel() else 0, 1), n)
        indices = torch.topk(priority, kmax, dim=-1).indices
        weights = torch.where(certain.unsqueeze(-1), 1.0, self._weights(ctx, indices))
        return Selection(indices.to(torch.int32), lengths.to(torch.int32), weights.contiguous())

"""vAttention-style selection: sinks, window and top-k read exactly, the rest estimated by uniform sampling.

Why the sample size. Split the allowed tokens into a deterministic set D (sink, window, top) and a
residual R of M tokens. With m the largest logit in D, let A = sum_{i in D} exp(s_i - m) and
x_i = exp(s_i - m) in [0, X] for i in R. Drawing n residual tokens uniformly without replacement and
weighting each by M / n (its inverse inclusion probability) makes (M/n) sum_j x_j an unbiased estimate
of the residual denominator sum_R x_i, and (M/n) sum_j x_j v_j of the residual numerator; the weights
travel in Selection.weights, which the attention backend applies in numerator and denominator.
Hoeffding's inequality (valid for sampling without replacement too) gives
    P(|(1/n) sum_j x_j - (1/M) sum_R x_i| >= u) <= 2 exp(-2 n u^2 / X^2).
Asking the denominator's error to stay below epsilon times the whole denominator, which is >= A,
i.e. u = epsilon A / M, with probability >= 1 - delta needs
    n >= (rho^2 / (2 epsilon^2)) ln(2 / delta),   rho = M X / A,
rho being the residual's largest possible mass relative to the deterministic mass. For values with
|v_c| <= V the same n bounds each numerator channel's error by epsilon A V. X is the smallest
top term: an exact bound when `top` is exact (OracleTopK at q_head), a plug-in estimate otherwise.

How the budget k is split. Sinks and window come first. The top selector is asked for the rest of the
budget; its tokens are ranked by exact logit (at kv_head by the group's largest logit). Keeping the
first t of them (the others join the residual), samples get the remaining budget n_t = min(rest - t,
M_t) and the bound gives epsilon_t = rho_t sqrt(ln(2/delta) / (2 n_t)) (0 when the residual is read
whole; at kv_head the worst head of the group). The largest t with epsilon_t <= epsilon and at least
min_samples samples (or the whole residual when smaller) is kept; when no t meets the bound, the budget
cannot pay for it and the t with the smallest epsilon_t is used. The total read is k, or every allowed
token when fewer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ctxsparse.selection import Selection, check_granularity
from ctxsparse.selectors.base import NEG_INF, SelectionContext, Selector, topk_selection
from ctxsparse.selectors.compose import concat_selections
from ctxsparse.selectors.oracle_topk import OracleTopK
from ctxsparse.selectors.registry import make_selector
from ctxsparse.selectors.sink_window import SinkWindow


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"VAttention {name} must be an integer >= {low}; got {value!r}.")


def required_samples(rho: float, epsilon: float, delta: float) -> int:
    """Samples the Hoeffding bound asks for: ceil(rho^2 ln(2/delta) / (2 epsilon^2))."""
    return math.ceil(rho * rho * math.log(2.0 / delta) / (2.0 * epsilon * epsilon))


def split_budget(
    sw_logits: torch.Tensor,
    top_logits: torch.Tensor,
    top_count: torch.Tensor,
    rest: torch.Tensor,
    residual0: torch.Tensor,
    epsilon: float,
    delta: float,
    min_samples: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Hoeffding split of the module docstring, on device tensors (no host sync; shared with the engine's
    GPU pipeline).

    sw_logits [B, H, g', Tq, s] and top_logits [B, H, g', Tq, k]: exact scaled logits of the sink/window and of
    the top selector's slots (-inf where a slot is invalid; g' the query heads of a group at kv_head, else 1);
    top_count, rest, residual0 [B, H, Tq]: valid top slots, the budget left after sink and window, and the
    residual's size outside both. Returns the top slots' order by logit [B, H, Tq, k], how many of them to keep
    and how many residual samples to draw ([B, H, Tq]).
    """
    order = torch.argsort(top_logits.amax(2), dim=-1, descending=True, stable=True)
    top_logits = top_logits.gather(-1, order.unsqueeze(2).expand_as(top_logits))
    m = torch.cat([sw_logits, top_logits], dim=-1).amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    terms = torch.exp(top_logits - m)  # 0 on invalid slots, which sort last
    a_sw = torch.exp(sw_logits - m).sum(-1, keepdim=True)
    a = torch.cat([a_sw, a_sw + terms.cumsum(-1)], dim=-1)  # A_t for t = 0..k
    count = top_count.unsqueeze(2).unsqueeze(-1)  # [B, H, 1, Tq, 1]
    smallest = terms.masked_fill(terms <= 0, math.inf).amin(-1, keepdim=True)
    smallest = torch.where(torch.isfinite(smallest), smallest, torch.zeros_like(smallest))
    suffix = terms.flip(-1).cummax(-1).values.flip(-1)
    x = torch.maximum(torch.cat([suffix, torch.zeros_like(a_sw)], dim=-1), smallest)  # X_t
    steps = torch.arange(top_logits.shape[-1] + 1, device=a.device).view(1, 1, 1, 1, -1)
    size = residual0.unsqueeze(2).unsqueeze(-1) + count - steps  # M_t
    samples = torch.minimum(rest.unsqueeze(2).unsqueeze(-1) - steps, size)  # n_t
    rho = torch.where(a > 0, size * x / a.clamp_min(1e-38), math.inf)
    spread = math.sqrt(math.log(2.0 / delta) / 2.0)
    eps = rho * spread / samples.clamp_min(1).sqrt()
    eps = torch.where(samples >= size, 0.0, torch.where(samples <= 0, math.inf, eps))
    eps = eps.amax(2)  # worst head of a kv group
    size, samples = size[:, :, 0], samples[:, :, 0]
    possible = steps[:, :, 0] <= count[:, :, 0]
    enough = samples >= torch.minimum(size, torch.full_like(size, min_samples))
    feasible = possible & enough & (eps <= epsilon)
    eps = eps.masked_fill(~possible, math.inf)
    best = (eps == eps.amin(-1, keepdim=True)) & possible
    idx = steps[:, :, 0].expand_as(eps)
    keep = torch.where(feasible.any(-1), (idx * feasible).amax(-1), (idx * best).amax(-1))
    draw = samples.gather(-1, keep.unsqueeze(-1)).squeeze(-1).clamp_min(0)
    return order, keep, draw


@dataclass
class VAttention(Selector):
    """Sink + window + top-k (exact) plus importance-weighted uniform samples of the residual.

    top: the selector of the deterministic heavy hitters (OracleTopK by default), a Selector or a
    registry spec such as 'double_sparsity:channels=16'; it runs at this selector's granularity, and
    the tokens it picks are read exactly (weight 1; any weights it returns are not used).
    seed: the residual samples are drawn from (seed, layer, step), so a session is reproducible.
    """

    epsilon: float = 0.05
    delta: float = 0.05
    sink: int = 4
    window: int = 64
    top: Selector | str | None = None
    min_samples: int = 16
    seed: int = 0
    granularity: str = "q_head"
    name = "vattention"
    static_shapes = True  # when its top selector's are too: see graph_ready

    def __post_init__(self) -> None:
        for what in ("epsilon", "delta"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"VAttention {what} must lie strictly between 0 and 1 (e.g. 0.05); got {value!r}.")
        _check_int("sink", self.sink, 0)
        _check_int("window", self.window, 0)
        _check_int("min_samples", self.min_samples, 1)
        check_granularity(self.granularity)
        top = OracleTopK() if self.top is None else self.top
        top = make_selector(top) if isinstance(top, str) else top
        if not isinstance(top, Selector):
            raise TypeError(f"VAttention top must be a selector or a selector name; got {type(top).__name__}.")
        if dataclasses.is_dataclass(top) and top.granularity != self.granularity:
            top = dataclasses.replace(top, granularity=self.granularity)
        self.top = top

    def _logits(self, ctx: SelectionContext, sel: Selection) -> torch.Tensor:
        """Exact scaled logits of selected slots, [B, H, g', Tq, k] (g' = group at kv_head, else 1)."""
        b, hq, t, d = ctx.query.shape
        hkv, g, k = ctx.num_kv_heads, ctx.group_size, sel.k
        q = ctx.query.float().view(b, hkv, g, t, d)
        idx = sel.indices.to(torch.int64)
        if self.granularity == "kv_head":
            kk = ctx.keys.gather(2, idx.reshape(b, hkv, t * k, 1).expand(-1, -1, -1, d)).float()
            # One small matmul per (b, kv head, t): [g, D] @ [D, k] -> [B, Hkv, g, Tq, k]
            qq = q.transpose(2, 3).reshape(-1, g, d)
            logits = torch.bmm(qq, kk.view(-1, k, d).transpose(1, 2)).view(b, hkv, t, g, k).transpose(2, 3)
        else:
            kk = ctx.keys.gather(2, idx.reshape(b, hkv, g * t * k, 1).expand(-1, -1, -1, d)).float()
            logits = (kk.view(b, hq, 1, t, k, d) * q.reshape(b, hq, 1, t, 1, d)).sum(-1)
        valid = sel.valid_mask().unsqueeze(2)
        return (logits * ctx.scale).masked_fill(~valid, NEG_INF)

    def _split(
        self, ctx: SelectionContext, sw: Selection, top: Selection, rest: torch.Tensor, residual0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Order of the top slots, how many of them to keep ([B, H, Tq]) and the samples to draw."""
        return split_budget(self._logits(ctx, sw), self._logits(ctx, top), top.counts(), rest, residual0,
                            self.epsilon, self.delta, self.min_samples)  # fmt: skip

    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        allowed = self.allowed(ctx, exclude)
        b, h, t, n = allowed.shape
        budget = k.expand(b, h, t)
        taken = torch.zeros_like(allowed) if exclude is None else exclude.expand_as(allowed).clone()
        parts: list[Selection] = []
        if self.sink + self.window > 0:
            sw = SinkWindow(self.sink, self.window, granularity=self.granularity).select(ctx, budget, exclude)
        else:
            empty = torch.zeros(b, h, t, 1, dtype=torch.int32, device=allowed.device)
            sw = Selection(empty, torch.zeros(b, h, t, dtype=torch.int32, device=allowed.device))
        parts.append(sw)
        taken |= sw.as_mask(n)
        rest = (budget - sw.counts()).clamp_min(0)
        if ctx.static_k is None and int(rest.max()) <= 0:
            return concat_selections(parts, (b, h, t), static_k=ctx.static_k)
        top = self.top.select(ctx, rest, taken)
        residual0 = (allowed & ~taken & ~top.as_mask(n)).sum(-1)
        order, keep, draw = self._split(ctx, sw, top, rest, residual0)
        kept = Selection(top.indices.gather(-1, order).to(torch.int32), keep.to(torch.int32))
        parts.append(kept)
        taken |= kept.as_mask(n)
        residual = allowed & ~taken
        size = residual.sum(-1)
        state = ctx.state(self)
        step = state.get("step", 0)
        state["step"] = step + 1
        # Drawn where the cache lives: a host draw of [B, H, Tq, N] plus its copy cost more than the layer's attention.
        # Under static_k the device's default generator draws (a seeded generator made per call cannot be captured).
        gen = None
        if ctx.static_k is None:
            gen = torch.Generator(device=residual.device).manual_seed(
                self.seed * 1_000_003 + ctx.layer_idx * 7919 + step
            )
        noise = torch.rand(residual.shape, generator=gen, device=residual.device)
        sampled = topk_selection(noise, draw, residual, static_k=ctx.static_k)
        weight = (size.float() / sampled.counts().clamp_min(1).float()).clamp_min(1.0)
        sampled.weights = weight.unsqueeze(-1).expand(sampled.indices.shape).contiguous()
        parts.append(sampled)
        return concat_selections(parts, (b, h, t), static_k=ctx.static_k)

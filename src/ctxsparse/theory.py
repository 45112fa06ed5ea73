"""Theorem 1 as code: dense attention over N > d + 1 tokens is not injective, so an exact sparse twin exists.

Attention maps a distribution a on the simplex over N tokens to o = V^T a (V is N x d). Two distributions give
the same output iff their difference z satisfies V^T z = 0 and 1^T z = 0, i.e. z lies in the null space of the
(d+1) x N matrix M = [V^T; 1^T]. rank(M) <= d + 1, so dim null(M) >= N - d - 1 > 0 once N > d + 1. For a
strictly positive a, the segment a + t z stays on the simplex for small t, which gives a second distribution
with the same output; walking t to the simplex boundary zeroes a token, so the twin has a smaller support.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

_EPS64 = torch.finfo(torch.float64).eps


@dataclass(frozen=True)
class Collision:
    """Two attention distributions over the same N tokens with the same output (all tensors float64, CPU)."""

    a1: torch.Tensor  # [N], the base distribution (strictly positive)
    a2: torch.Tensor  # [N], a1 + t z with z in null([V^T; 1^T])
    o1: torch.Tensor  # [d], V^T a1
    o2: torch.Tensor  # [d], V^T a2
    max_abs_diff: float  # max_k |o1_k - o2_k|
    rel_output_error: float  # max_abs_diff / max_ik |V_ik|  (|o_k| <= max_i |V_ik| on the simplex)
    l1: float  # sum_i |a1_i - a2_i|
    tv: float  # total-variation distance, l1 / 2
    t: float  # the step taken along z
    t_max: float  # the largest step keeping a1 + t z >= 0
    rank: int  # numerical rank of [V^T; 1^T]
    null_dim: int  # N - rank
    n: int
    d: int

    @property
    def support1(self) -> int:
        return int((self.a1 > 0).sum())

    @property
    def support2(self) -> int:
        return int((self.a2 > 0).sum())


@dataclass(frozen=True)
class Verification:
    """Outcome of `verify`: passed is True when every check holds; problems says which did not."""

    passed: bool
    rel_output_error: float
    tv: float
    problems: tuple[str, ...]


def _as_values(values: torch.Tensor) -> torch.Tensor:
    """V as a finite float64 CPU matrix [N, d]; float32/bf16/fp16 inputs lift to float64 exactly."""
    if not isinstance(values, torch.Tensor) or values.dim() != 2:
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"values must be a 2-D tensor [N tokens, d]; got {shape}.")
    if values.is_complex():
        raise ValueError("values must be real; got a complex tensor.")
    v = values.detach().to("cpu", torch.float64)
    if not torch.isfinite(v).all():
        raise ValueError("values contain NaN or inf: pass a finite value matrix.")
    return v


def _augmented(v: torch.Tensor) -> torch.Tensor:
    """M = [V^T; 1^T], (d+1) x N: its null space holds the directions that keep both output and total mass."""
    return torch.cat([v.T, torch.ones(1, v.shape[0], dtype=v.dtype)], dim=0)


def _rank(m: torch.Tensor, rtol: float | None) -> int:
    """Numerical rank: singular values above rtol * s_max, rtol defaulting to max(M.shape) * eps(float64)."""
    s = torch.linalg.svdvals(m)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return 0
    tol = (max(m.shape) * _EPS64 if rtol is None else rtol) * float(s[0])
    return int((s > tol).sum())


def augmented_rank(values: torch.Tensor, rtol: float | None = None) -> int:
    """rank([V^T; 1^T]) for V [N, d], computed in float64 (at most d + 1)."""
    return _rank(_augmented(_as_values(values)), rtol)


def null_space_dimension(values: torch.Tensor, rtol: float | None = None) -> int:
    """N - rank([V^T; 1^T]): how many independent ways to move attention mass without changing the output."""
    v = _as_values(values)
    return v.shape[0] - _rank(_augmented(v), rtol)


def _check_applies(n: int, d: int) -> None:
    if n <= d + 1:
        raise ValueError(
            f"Theorem 1 needs N > d + 1 tokens; got N={n}, d={d}. With N <= d + 1 the matrix [V^T; 1^T] can "
            "have full column rank, so dense attention may be injective: use more tokens or a smaller d."
        )


def _base_distribution(base: torch.Tensor | None, n: int, gen: torch.Generator) -> torch.Tensor:
    """The base a1: the given one (checked, renormalised in float64) or softmax of standard-normal logits."""
    if base is None:
        return torch.softmax(torch.randn(n, generator=gen, dtype=torch.float64), dim=0)
    if not isinstance(base, torch.Tensor) or base.dim() != 1 or base.shape[0] != n:
        shape = tuple(base.shape) if isinstance(base, torch.Tensor) else type(base).__name__
        raise ValueError(f"base must be a 1-D distribution over the N={n} tokens; got {shape}.")
    a = base.detach().to("cpu", torch.float64)
    if not torch.isfinite(a).all():
        raise ValueError("base contains NaN or inf: pass a finite distribution.")
    if float(a.min()) <= 0.0:
        raise ValueError(
            f"base must be strictly positive (min is {float(a.min()):.3g}): the construction moves every "
            "entry a little, so a token at weight 0 could go negative. Add a small floor and renormalise."
        )
    total = float(a.sum())
    if abs(total - 1.0) > 1e-5:
        raise ValueError(f"base must sum to 1; it sums to {total:.9g}. Divide it by its sum first.")
    return a / a.sum()


def _null_direction(m: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A unit vector z with M z = 0: a random vector minus its projection on the row space of M.

    The reduced SVD M = U S W gives an orthonormal basis W (min(d+1, N) rows) of the row space, including
    directions whose singular values are tiny; subtracting all of them makes M z vanish to float64 rounding
    whatever the numerical rank, and z stays in null(M), which has dimension >= N - d - 1 > 0.
    """
    w = torch.linalg.svd(m, full_matrices=False).Vh  # [min(d+1, N), N]
    z = torch.randn(m.shape[1], generator=gen, dtype=torch.float64)
    for _ in range(2):  # a second pass removes what rounding left of the row-space component
        z = z - w.T @ (w @ z)
    norm = float(z.norm())
    if norm < 1e-8:  # would need the random draw to sit in the row space: probability zero
        raise RuntimeError("The random direction fell in the row space of [V^T; 1^T]; use another seed.")
    return z / norm


def _max_step(a: torch.Tensor, z: torch.Tensor) -> tuple[float, int]:
    """Largest t with a + t z >= 0: t_max = min over z_i < 0 of a_i / (-z_i), and the index reaching 0 first.

    1^T z = 0 and z != 0 force some z_i < 0, so t_max is finite and positive for a > 0.
    """
    neg = z < 0
    ratios = torch.full_like(a, float("inf"))
    ratios[neg] = a[neg] / (-z[neg])
    i = int(torch.argmin(ratios))
    return float(ratios[i]), i


def collision(
    values: torch.Tensor,
    base: torch.Tensor | None = None,
    seed: int = 0,
    step: float = 1.0,
    rtol: float | None = None,
) -> Collision:
    """Two distinct attention distributions a1 != a2 over V's N tokens with V^T a1 == V^T a2.

    values: V [N, d] with N > d + 1 (any real float dtype; the maths runs in float64).
    base: a1, strictly positive and summing to 1; by default softmax of seeded standard-normal logits.
    step: the fraction of t_max to walk along the null direction z, in (0, 1]. The default 1.0 walks to the
    simplex boundary: the token that hits 0 first is set to exactly 0, so a2 also has a smaller support than
    a1 (same output from fewer tokens). Any step < 1 keeps a2 strictly positive.
    Of z and -z the one allowing the longer step is used, which makes the two distributions further apart.
    """
    v = _as_values(values)
    n, d = v.shape
    _check_applies(n, d)
    if not 0.0 < step <= 1.0:
        raise ValueError(f"step is a fraction of the largest feasible step, in (0, 1]; got {step}.")
    gen = torch.Generator().manual_seed(seed)
    a1 = _base_distribution(base, n, gen)
    m = _augmented(v)
    z = _null_direction(m, gen)
    (t_pos, i_pos), (t_neg, i_neg) = _max_step(a1, z), _max_step(a1, -z)
    if t_neg > t_pos:
        z, t_max, i_zero = -z, t_neg, i_neg
    else:
        t_max, i_zero = t_pos, i_pos
    t = step * t_max
    a2 = a1 + t * z
    if step == 1.0:
        a2[i_zero] = 0.0  # a1_i + t_max z_i is 0 up to rounding: make the dropped token exact
    a2 = a2.clamp_min(0.0)  # other entries are >= 0 by the choice of t; this only removes rounding below 0
    o1, o2 = v.T @ a1, v.T @ a2
    diff = float((o1 - o2).abs().max())
    scale = float(v.abs().max())
    l1 = float((a1 - a2).abs().sum())
    rank = _rank(m, rtol)
    return Collision(
        a1=a1,
        a2=a2,
        o1=o1,
        o2=o2,
        max_abs_diff=diff,
        rel_output_error=diff / scale if scale > 0 else diff,
        l1=l1,
        tv=l1 / 2,
        t=t,
        t_max=t_max,
        rank=rank,
        null_dim=n - rank,
        n=n,
        d=d,
    )


def verify(c: Collision, rtol: float = 1e-10, min_tv: float = 1e-9, atol_mass: float = 1e-12) -> Verification:
    """Check a collision numerically: same output to float64 rounding, clearly different, both on the simplex.

    Same output: max|o1 - o2| / max|V| < rtol (float64 rounding of V^T a is ~N * 1e-16 of that scale).
    Different: TV(a1, a2) >= min_tv, orders of magnitude above any rounding effect.
    Valid: every entry >= 0 and |sum - 1| <= atol_mass, for both.
    """
    problems: list[str] = []
    if not c.rel_output_error < rtol:
        problems.append(f"outputs differ: relative error {c.rel_output_error:.3g} >= {rtol:.1g}")
    if not c.tv >= min_tv:
        problems.append(f"distributions too close: TV {c.tv:.3g} < {min_tv:.1g}")
    for name, a in (("a1", c.a1), ("a2", c.a2)):
        if float(a.min()) < 0.0:
            problems.append(f"{name} has a negative entry ({float(a.min()):.3g})")
        mass = float(a.sum())
        if abs(mass - 1.0) > atol_mass:
            problems.append(f"{name} sums to {mass:.17g}, not 1")
    return Verification(passed=not problems, rel_output_error=c.rel_output_error, tv=c.tv, problems=tuple(problems))


def format_collision(c: Collision, check: Verification, title: str = "random V") -> str:
    """A few lines stating the construction and the check, for the CLI."""
    status = "PASS: two different distributions, one output" if check.passed else "FAIL: " + "; ".join(check.problems)
    boundary = "at the simplex boundary" if c.t == c.t_max else f"{c.t / c.t_max:.2f} of the way there"
    return "\n".join(
        [
            f"{title}: N={c.n} tokens, d={c.d}",
            f"  rank [V^T; 1^T] = {c.rank}, null space dim = {c.null_dim} (N - d - 1 = {c.n - c.d - 1})",
            f"  a1: support {c.support1}/{c.n};  a2 = a1 + t z, t {boundary}: support {c.support2}/{c.n}",
            f"  max |o1 - o2| = {c.max_abs_diff:.2e} (relative {c.rel_output_error:.2e});  TV(a1, a2) = {c.tv:.4f}",
            f"  check: {status}",
        ]
    )


# ----------------------------------------------------------------------------------------------------
# Real value caches
# ----------------------------------------------------------------------------------------------------


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


_SUBJECTS = (
    "The harbour master",
    "A tired cartographer",
    "The old librarian",
    "Every apprentice in the workshop",
    "The river pilot",
    "A visiting botanist",
    "The village council",
    "Her younger brother",
    "The night watchman",
    "A travelling glassblower",
    "The choir",
    "Our neighbour",
)
_VERBS = (
    "carefully examined",
    "quietly repaired",
    "argued about",
    "wrote a long letter describing",
    "measured",
    "forgot",
    "painted",
    "carried",
    "counted",
    "sold",
    "borrowed",
    "remembered",
)
_OBJECTS = (
    "the brass telescope",
    "a map of the northern islands",
    "seventeen jars of honey",
    "the broken weather vane",
    "an unfinished bridge",
    "the grain ledgers from last winter",
    "a crate of lemons",
    "the bell in the square",
    "a recipe for plum bread",
    "the lighthouse lamp",
    "three wooden chairs",
    "the schedule of the ferry",
)
_TAILS = (
    "before the tide turned.",
    "while the rain kept falling.",
    "because nobody else would.",
    "and then went home for supper.",
    "although the light was poor.",
    "on the first morning of spring.",
    "without saying a word.",
    "as the market was closing.",
    "for the third time that week.",
    "near the old stone mill.",
    "with great patience.",
    "after the festival ended.",
)


def default_prose(sentences: int = 160, seed: int = 0) -> str:
    """Deterministic, varied English prose of any length (160 sentences is ~1,600 tokens)."""
    rng = random.Random(seed)
    parts = (_SUBJECTS, _VERBS, _OBJECTS, _TAILS)
    return " ".join(" ".join(rng.choice(p) for p in parts) for _ in range(sentences))


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
            v = _as_values(vals[0, h])  # [N, d]
            n, d = v.shape
            if n > d + 1:
                c = collision(v, seed=seed + 1000 * layer + h, rtol=rtol)
                rank, diff, tv, ok = c.rank, c.max_abs_diff, c.tv, verify(c).passed
            else:
                rank, diff, tv, ok = _rank(_augmented(v), rtol), None, None, None
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

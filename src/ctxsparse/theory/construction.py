"""Theorem 1 as code: dense attention over N > d + 1 tokens is not injective, so an exact sparse twin exists.

Attention maps a distribution a on the simplex over N tokens to o = V^T a (V is N x d). Two distributions give
the same output iff their difference z satisfies V^T z = 0 and 1^T z = 0, i.e. z lies in the null space of the
(d+1) x N matrix M = [V^T; 1^T]. rank(M) <= d + 1, so dim null(M) >= N - d - 1 > 0 once N > d + 1. For a
strictly positive a, the segment a + t z stays on the simplex for small t, which gives a second distribution
with the same output; walking t to the simplex boundary zeroes a token, so the twin has a smaller support.
"""

from __future__ import annotations

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


def as_value_matrix(values: torch.Tensor) -> torch.Tensor:
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
    return _rank(_augmented(as_value_matrix(values)), rtol)


def null_space_dimension(values: torch.Tensor, rtol: float | None = None) -> int:
    """N - rank([V^T; 1^T]): how many independent ways to move attention mass without changing the output."""
    v = as_value_matrix(values)
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
    v = as_value_matrix(values)
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

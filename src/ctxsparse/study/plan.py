"""The study grid: models x methods x sparsity levels x tasks x context lengths x samples.

A configuration (model, method spec, sparsity, phase, dtype) is hashed; a result row is keyed by
(config hash, task, length, sample, seed). Dense runs once per sample at sparsity 1 (its phase does not
matter, so it is stored as phase 'any'); every sparse method runs at every sparsity > 1.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ctxsparse.selectors.registry import parse_params

DENSE = "dense"
PHASES = ("question", "decode")
DENSE_PHASE = "any"


def _render_value(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


@dataclass(frozen=True)
class MethodSpec:
    """A selector spec as make_selector reads it, in canonical form ('sink_window:sink=4,window=64')."""

    spec: str
    name: str
    params: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        """Canonicalise 'name', 'name:k=v,...' or 'a+b' (parameters sorted, whitespace dropped)."""
        text = text.strip()
        if not text:
            raise ValueError("Empty method spec; give a selector name such as 'oracle_topk'.")
        if "+" in text:
            parts = [cls.parse(part) for part in text.split("+")]
            return cls("+".join(p.spec for p in parts), "+".join(p.name for p in parts), {})
        name, _, rest = text.partition(":")
        params = parse_params(rest)
        rendered = ",".join(f"{k}={_render_value(params[k])}" for k in sorted(params))
        spec = f"{name.strip()}:{rendered}" if rendered else name.strip()
        return cls(spec, name.strip(), {k: params[k] for k in sorted(params)})

    @property
    def is_dense(self) -> bool:
        return self.name == DENSE


def split_methods(texts: Iterable[str]) -> list[str]:
    """Method specs from --methods/--method values.

    Each value is split on ';' when it has one. Otherwise it is split on ',' and an item of the form
    'key=value' (no ':') is joined back to the method before it, so 'dense,oracle_topk,sink_window:sink=4,
    window=64' gives three methods, as does 'dense;oracle_topk;sink_window:sink=4,window=64'.
    """
    specs: list[str] = []
    for text in texts:
        if ";" in text:
            specs.extend(p.strip() for p in text.split(";") if p.strip())
            continue
        group: list[str] = []
        for item in (p.strip() for p in text.split(",")):
            if not item:
                continue
            if "=" in item and ":" not in item.split("=", 1)[0] and group and ":" in group[-1]:
                group[-1] = f"{group[-1]},{item}"
            elif "=" in item and ":" not in item:
                raise ValueError(
                    f"Method parameter {item!r} follows no 'name:param=value' spec; write e.g. "
                    "'sink_window:sink=4,window=64', or separate methods with ';'."
                )
            else:
                group.append(item)
        specs.extend(group)
    return specs


def parse_numbers(text: str | Sequence[float], kind: type = float) -> list:
    """'1,10,20' -> [1.0, 10.0, 20.0] (or ints with kind=int); sequences pass through converted."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        try:
            value = kind(item.strip()) if isinstance(item, str) else kind(item)
        except ValueError as err:
            raise ValueError(f"Expected a comma-separated list of numbers; {item!r} is not one.") from err
        out.append(value)
    return out


@dataclass(frozen=True)
class Config:
    """One decoding configuration; its hash keys result rows (task, length, sample and seed complete the key)."""

    model: str
    method: MethodSpec
    sparsity: float
    phase: str
    dtype: str
    max_new_tokens: int | None = None

    @property
    def hash(self) -> str:
        payload: dict[str, object] = {
            "model": self.model,
            "method": self.method.spec,
            "sparsity": float(self.sparsity),
            "phase": self.phase,
            "dtype": self.dtype,
        }
        if self.max_new_tokens is not None:
            payload["max_new_tokens"] = self.max_new_tokens
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def new_tokens_for(self, sample: object) -> int:
        """The sample's own max_new_tokens, capped by the study's --max-new-tokens when given."""
        own = int(getattr(sample, "max_new_tokens", 32))
        return own if self.max_new_tokens is None else min(own, self.max_new_tokens)

    def label(self) -> str:
        return self.method.spec if self.method.is_dense else f"{self.method.spec} @ {self.sparsity:g}x"


@dataclass(frozen=True)
class StudyPlan:
    """What to run. samples: samples generated per (task, length); limit: how many of those to run now
    (an int, or a fraction < 1 of samples, as in lm-evaluation-harness; None = all)."""

    models: tuple[str, ...]
    methods: tuple[MethodSpec, ...]
    sparsities: tuple[float, ...]
    tasks: tuple[str, ...]
    lengths: tuple[int, ...]
    samples: int = 10
    seed: int = 0
    phase: str = "question"
    dtype: str = "auto"
    limit: float | None = None
    max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("models", "methods", "tasks", "lengths"):
            if not getattr(self, name):
                raise ValueError(f"The study needs at least one entry in {name}.")
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}; got {self.phase!r}.")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1; got {self.samples}.")
        for s in self.sparsities:
            if not (math.isfinite(s) and s >= 1):
                raise ValueError(f"Sparsity levels must be finite numbers >= 1 (1 = dense); got {s}.")
        for n in self.lengths:
            if n < 1:
                raise ValueError(f"Context lengths must be positive token counts; got {n}.")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1; got {self.max_new_tokens}.")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be positive (a count, or a fraction below 1); got {self.limit}.")
        if any(not m.is_dense for m in self.methods) and not any(s > 1 for s in self.sparsities):
            raise ValueError("Sparse methods need at least one sparsity level > 1 (e.g. --sparsity 10,50).")

    @classmethod
    def build(
        cls,
        models: Sequence[str],
        methods: Sequence[str],
        sparsities: Sequence[float],
        tasks: Sequence[str],
        lengths: Sequence[int],
        **kwargs: object,
    ) -> StudyPlan:
        """Parse method specs, drop duplicates (keeping order) and always include the dense baseline."""
        parsed = [MethodSpec.parse(m) for m in methods]
        if not any(m.is_dense for m in parsed):
            parsed.insert(0, MethodSpec.parse(DENSE))
        return cls(
            models=tuple(dict.fromkeys(models)),
            methods=tuple(dict.fromkeys(parsed)),
            sparsities=tuple(dict.fromkeys(float(s) for s in sparsities)),
            tasks=tuple(dict.fromkeys(tasks)),
            lengths=tuple(dict.fromkeys(int(n) for n in lengths)),
            **kwargs,
        )

    @property
    def samples_to_run(self) -> int:
        """Samples per (task, length) this invocation runs: samples, capped by limit."""
        if self.limit is None:
            return self.samples
        if self.limit < 1:
            return max(1, math.ceil(self.samples * self.limit))
        return min(self.samples, int(self.limit))

    def configs(self, model: str) -> list[Config]:
        """Configurations of one model: dense once (sparsity 1), each sparse method at each sparsity > 1."""
        out: list[Config] = []
        for method in self.methods:
            if method.is_dense:
                out.append(Config(model, method, 1.0, DENSE_PHASE, self.dtype, self.max_new_tokens))
                continue
            for s in self.sparsities:
                if s > 1:
                    out.append(Config(model, method, s, self.phase, self.dtype, self.max_new_tokens))
        return out

    def size(self) -> int:
        """Result rows in the full grid for this invocation."""
        per_sample = len(self.configs(self.models[0]))
        return len(self.models) * per_sample * len(self.tasks) * len(self.lengths) * self.samples_to_run

    def check_positions(self, limit_of: Callable[[str], int | None]) -> None:
        """Refuse lengths beyond any model's positions; limit_of reads a model's config only (no weights)."""
        for model in self.models:
            limit = limit_of(model)
            too_long = [n for n in self.lengths if limit is not None and n > limit]
            if too_long:
                raise ValueError(
                    f"--lengths {','.join(map(str, too_long))} exceed {model}'s limit of {limit} positions "
                    f"(max_position_embeddings); choose --lengths at most {limit}."
                )

    def describe(self) -> dict[str, object]:
        """JSON-friendly description, stored with each run."""
        return {
            "models": list(self.models),
            "methods": [m.spec for m in self.methods],
            "sparsities": list(self.sparsities),
            "tasks": list(self.tasks),
            "lengths": list(self.lengths),
            "samples": self.samples,
            "limit": self.limit,
            "seed": self.seed,
            "phase": self.phase,
            "dtype": self.dtype,
            "max_new_tokens": self.max_new_tokens,
        }

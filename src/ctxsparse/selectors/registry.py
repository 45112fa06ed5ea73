"""Selectors by name, for the CLI and the study: 'oracle_topk', 'sink_window:sink=4,window=64', 'a+b'."""

from __future__ import annotations

import ast
import math

from ctxsparse.selection import check_granularity
from ctxsparse.selectors.base import Selector

SELECTORS: dict[str, type[Selector]] = {}


def register_selector(cls: type[Selector]) -> type[Selector]:
    """Make a selector class known by its `name` attribute."""
    SELECTORS[cls.name] = cls
    return cls


NON_FINITE = ("nan", "inf", "+inf", "-inf", "infinity", "-infinity")


def _parse_value(text: str) -> object:
    if text.lower() in NON_FINITE:
        return float(text)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_params(name: str, params: dict[str, object]) -> None:
    """Refuse non-finite numbers and an unknown granularity, naming the parameter and what to give."""
    for key, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"Selector parameter {name}:{key}={value} is not a finite number; give e.g. {key}=0.9.")
    if "granularity" in params:
        try:
            check_granularity(str(params["granularity"]))
        except ValueError as err:
            raise ValueError(f"Selector {name!r}: {err}") from None


def parse_params(text: str) -> dict[str, object]:
    """'sink=4,window=64' -> {'sink': 4, 'window': 64}."""
    params: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in item:
            raise ValueError(f"Selector parameter {item!r} must look like name=value (e.g. sink=4).")
        key, value = item.split("=", 1)
        params[key.strip()] = _parse_value(value.strip())
    return params


def make_selector(spec: str | Selector, **params: object) -> Selector:
    """Build a selector from 'name', 'name:k=v,...' or 'first+second' (a Compose sharing one budget)."""
    if isinstance(spec, Selector):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise TypeError(
            f"make_selector needs a selector spec such as 'oracle_topk' or 'sink_window:sink=4,window=64', or a "
            f"Selector; got {spec!r}. Known selectors: {', '.join(sorted(SELECTORS))}."
        )
    from ctxsparse.selectors.compose import Compose

    if "+" in spec:
        check_params(spec, params)
        granularity = params.pop("granularity", "q_head")
        return Compose(*(make_selector(part) for part in spec.split("+")), granularity=str(granularity))
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in SELECTORS:
        raise ValueError(f"Unknown selector {name!r}. Known selectors: {', '.join(sorted(SELECTORS))}.")
    merged = {**parse_params(rest), **params}
    check_params(name, merged)
    try:
        return SELECTORS[name](**merged)
    except TypeError as err:
        raise ValueError(f"Bad parameters for selector {name!r}: {err}") from err

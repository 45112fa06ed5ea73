"""Selectors decide which cached tokens each head reads; one selector per file."""

from ctxsparse.selectors.base import SelectionContext, Selector, topk_selection
from ctxsparse.selectors.compose import Compose
from ctxsparse.selectors.dense import Dense
from ctxsparse.selectors.oracle_topk import OracleTopK
from ctxsparse.selectors.oracle_topp import OracleTopP
from ctxsparse.selectors.random_tokens import RandomTokens
from ctxsparse.selectors.registry import SELECTORS, make_selector, register_selector
from ctxsparse.selectors.sink_window import SinkWindow

for _cls in (Dense, OracleTopK, OracleTopP, SinkWindow, RandomTokens):
    register_selector(_cls)

__all__ = [
    "SELECTORS",
    "Compose",
    "Dense",
    "OracleTopK",
    "OracleTopP",
    "RandomTokens",
    "SelectionContext",
    "Selector",
    "SinkWindow",
    "make_selector",
    "register_selector",
    "topk_selection",
]

"""Selectors decide which cached tokens each head reads; one selector per file."""

from ctxsparse.selectors.base import SelectionContext, Selector, topk_selection
from ctxsparse.selectors.calibration import Calibration
from ctxsparse.selectors.compose import Compose
from ctxsparse.selectors.dense import Dense
from ctxsparse.selectors.double_sparsity import DoubleSparsity
from ctxsparse.selectors.lsh import LSHSampling
from ctxsparse.selectors.oracle_topk import OracleTopK
from ctxsparse.selectors.oracle_topp import OracleTopP
from ctxsparse.selectors.quest import Quest
from ctxsparse.selectors.random_tokens import RandomTokens
from ctxsparse.selectors.registry import SELECTORS, make_selector, register_selector
from ctxsparse.selectors.sink_window import SinkWindow
from ctxsparse.selectors.vattention import VAttention

for _cls in (Dense, OracleTopK, OracleTopP, SinkWindow, RandomTokens, Quest, DoubleSparsity, VAttention, LSHSampling):
    register_selector(_cls)

__all__ = [
    "SELECTORS",
    "Calibration",
    "Compose",
    "Dense",
    "DoubleSparsity",
    "LSHSampling",
    "OracleTopK",
    "OracleTopP",
    "Quest",
    "RandomTokens",
    "SelectionContext",
    "Selector",
    "SinkWindow",
    "VAttention",
    "make_selector",
    "register_selector",
    "topk_selection",
]

"""Selection and make_selector refuse what would fail later or silently: lists, bad lengths, None specs."""

import pytest
import torch

from ctxsparse import Selection, make_selector


def test_selection_from_a_list_says_how_to_wrap_it():
    with pytest.raises(TypeError, match=r"Selection.indices must be a torch.Tensor; got list.*torch.tensor"):
        Selection([[[[0, 1]]]])


@pytest.mark.parametrize("length", [3, -1])
def test_selection_lengths_outside_zero_to_k(length):
    indices = torch.zeros(1, 1, 1, 2, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, k=2\]"):
        Selection(indices, lengths=torch.full((1, 1, 1), length, dtype=torch.int32))


@pytest.mark.parametrize("spec", [None, "", 3])
def test_make_selector_without_a_spec(spec):
    with pytest.raises(TypeError, match="make_selector needs a selector spec such as 'oracle_topk'.*Known selectors"):
        make_selector(spec)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("oracle_topp:p=nan", "oracle_topp:p=nan is not a finite number"),
        ("oracle_topp:p=inf", "not a finite number"),
        ("oracle_topk:granularity=heads", "granularity must be one of"),
        ("oracle_topk+sink_window:sink=4,window=8", None),
    ],
)
def test_spec_parameters_checked_when_parsed(spec, says):
    if says is None:
        make_selector(spec)
        return
    with pytest.raises(ValueError, match=says):
        make_selector(spec)

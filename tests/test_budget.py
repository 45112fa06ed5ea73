import math

import pytest
import torch

from ctxsparse import Budget


def test_sparsity_arithmetic():
    assert Budget(sparsity=50).tokens_for(1000) == 20
    assert Budget(sparsity=10).tokens_for(1001) == 101
    assert Budget(sparsity=3).tokens_for(2) == 1
    assert Budget(sparsity=1).tokens_for(77) == 77
    assert Budget(sparsity=10).tokens_for(0) == 0


def test_density_and_tokens():
    assert Budget(density=0.1).tokens_for(1000) == 100
    assert Budget(density=0.1).tokens_for(1001) == 101
    assert Budget(tokens=64).tokens_for(1000) == 64
    assert Budget(tokens=64).tokens_for(10) == 10
    assert Budget(density=1.0).is_dense and Budget(sparsity=1).is_dense and not Budget(tokens=5).is_dense


@pytest.mark.parametrize("budget", [Budget(sparsity=7), Budget(density=0.13), Budget(tokens=9)])
def test_tensor_form_matches_scalar(budget):
    n = torch.tensor([0, 1, 5, 63, 64, 65, 1000, 4097])
    expected = [budget.tokens_for(int(x)) for x in n]
    assert budget.tokens_for_tensor(n).tolist() == expected


def test_ceil_not_floor():
    for n in range(1, 300):
        assert Budget(sparsity=7).tokens_for(n) == max(1, math.ceil(n / 7))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sparsity": 0.5}, "sparsity must be"),
        ({"sparsity": float("inf")}, "sparsity must be"),
        ({"density": 0.0}, "density must lie"),
        ({"density": 1.5}, "density must lie"),
        ({"tokens": 0}, "tokens must be"),
        ({"tokens": 2.5}, "tokens must be"),
        ({}, "exactly one"),
        ({"sparsity": 10, "tokens": 5}, "exactly one"),
    ],
)
def test_bad_budgets(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Budget(**kwargs)


def test_label():
    assert Budget(sparsity=50).label() == "50x"
    assert Budget(tokens=8).label() == "k=8"


@pytest.mark.parametrize("kwargs", [{"sparsity": "abc"}, {"density": "0.1"}, {"tokens": None, "sparsity": True}])
def test_non_numbers_are_refused_with_an_example(kwargs):
    with pytest.raises(TypeError, match=r"must be a number; got .*Example: Budget\("):
        Budget(**kwargs)

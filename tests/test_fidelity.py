import math

import torch

from ctxsparse import Selection
from ctxsparse.fidelity import FidelityTrace, kl_divergence, mass_recall, relative_error, top1_agreement


def test_mass_recall_hand_made():
    probs = torch.tensor([[[[0.5, 0.3, 0.15, 0.05]]]])
    sel = Selection(torch.tensor([[[[0, 2, 2]]]], dtype=torch.int32))
    assert math.isclose(mass_recall(sel, probs).item(), 0.65, rel_tol=1e-6)


def test_relative_error_and_kl():
    assert math.isclose(relative_error(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 0.0])).item(), 4 / 3, rel_tol=1e-6)
    p = torch.log(torch.tensor([0.5, 0.5]))
    q = torch.log(torch.tensor([0.9, 0.1]))
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert math.isclose(kl_divergence(p, q).item(), expected, rel_tol=1e-5)
    assert kl_divergence(p, p).item() == 0.0
    assert top1_agreement(torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]])).tolist() == [
        True,
        False,
    ]


def test_trace_summary():
    trace = FidelityTrace()
    trace.record_layer(0, density=torch.tensor([0.1, 0.3]), mass_recall=torch.tensor([1.0]))
    trace.record_layer(1, density=torch.tensor([0.2]), mass_recall=torch.tensor([0.5]))
    trace.record_logits(torch.tensor([[0.0, 5.0]]), torch.tensor([[5.0, 0.0]]))
    s = trace.summary()
    assert math.isclose(s["density"], 0.2, rel_tol=1e-6)
    assert math.isclose(s["mass_recall"], 0.75, rel_tol=1e-6)
    assert s["top1_agreement"] == 0.0 and s["kl"] > 4 and s["steps"] == 1
    assert s["per_layer"][1]["density"] == 0.2 or math.isclose(s["per_layer"][1]["density"], 0.2, rel_tol=1e-6)
    assert "density 0.2000" in trace.format()

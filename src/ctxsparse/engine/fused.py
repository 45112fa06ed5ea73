"""Fused projections for decode steps: one GEMM for q/k/v and one for gate/up, instead of three and two.

A decode step is bound by reading weights and by the number of kernels: per layer the three attention input
projections read the same hidden state, and so do the MLP's gate and up projections. fuse_weights() (once per
model) concatenates each group's weights (and biases) into one tensor and makes the modules' own parameters
views into it: no extra memory, and the model's modules and plain transformers calls see the same values.
While decode steps run (shared_gemms()), the first module of a group called computes every output of the
group in one GEMM and the others take their slices of it; called with another input they compute their own.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ctxsparse.engine.grad_mode import engine_mode

# called in this order, on one input; the second is the MLP's
GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class SharedGemm:
    """The Linear modules of one group and the fused weight their parameters are views of."""

    def __init__(self, names: tuple[str, ...], modules: list[torch.nn.Linear], weight: torch.Tensor,
                 bias: torch.Tensor | None) -> None:  # fmt: skip
        self.names, self.modules, self.weight, self.bias = names, modules, weight, bias
        self.sizes = [m.out_features for m in modules]
        self.input: torch.Tensor | None = None
        self.outputs: tuple[torch.Tensor, ...] = ()

    def intact(self) -> bool:
        """Whether the modules' parameters are still views into the fused tensors (not replaced or moved)."""
        start = 0
        for m, n in zip(self.modules, self.sizes, strict=True):
            if m.weight.data_ptr() != self.weight[start].data_ptr() or m.weight.shape != (n, self.weight.shape[1]):
                return False
            if (self.bias is None) != (m.bias is None):
                return False
            if m.bias is not None and m.bias.data_ptr() != self.bias[start].data_ptr():
                return False
            start += n
        return True

    def first(self, x: torch.Tensor) -> torch.Tensor:
        self.input, self.outputs = x, F.linear(x, self.weight, self.bias).split(self.sizes, -1)
        return self.outputs[0]

    def later(self, i: int):
        module, last = self.modules[i], i == len(self.modules) - 1

        def forward(x: torch.Tensor) -> torch.Tensor:
            if x is not self.input:
                return F.linear(x, module.weight, module.bias)
            out = self.outputs[i]
            if last:  # the group is done with this input: drop the references
                self.input, self.outputs = None, ()
            return out

        return forward


def _fusable(modules: list) -> bool:
    if not all(type(m) is torch.nn.Linear for m in modules):
        return False
    w = modules[0].weight
    same = all(m.weight.dtype == w.dtype and m.weight.device == w.device and m.in_features == w.shape[1]
               for m in modules)  # fmt: skip
    hooks = any(m._forward_hooks or m._forward_pre_hooks for m in modules)
    return same and not hooks and len({m.bias is None for m in modules}) == 1


@engine_mode()
def _fuse(names: tuple[str, ...], modules: list[torch.nn.Linear]) -> SharedGemm:
    weight = torch.cat([m.weight for m in modules])
    bias = None if modules[0].bias is None else torch.cat([m.bias for m in modules])
    start = 0
    for m in modules:
        n = m.out_features
        m.weight = torch.nn.Parameter(weight[start : start + n], requires_grad=m.weight.requires_grad)
        if bias is not None:
            m.bias = torch.nn.Parameter(bias[start : start + n], requires_grad=m.bias.requires_grad)
        start += n
    return SharedGemm(names, modules, weight, bias)


_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fuse_weights(model: torch.nn.Module) -> list[SharedGemm]:
    """Each q/k/v and gate/up group of plain Linear modules (same input size, dtype, device; no hooks) fused once
    per model (again if its parameters were replaced or moved since)."""
    groups = _FUSED.get(model)
    if groups is not None and all(g.intact() for g in groups):
        return groups
    groups = []
    for parent in model.modules():
        for names in GROUPS:
            modules = [getattr(parent, n, None) for n in names]
            if all(m is not None for m in modules) and _fusable(modules):
                groups.append(_fuse(names, modules))
    _FUSED[model] = groups
    return groups


@contextlib.contextmanager
def shared_gemms(groups: list[SharedGemm], mlp: bool = True) -> Iterator[int]:
    """Route each group's calls through its one GEMM inside the block (mlp=False: q/k/v only); yields how many."""
    active = [g for g in groups if mlp or g.names != GROUPS[1]]
    try:
        for g in active:
            g.modules[0].forward = g.first
            for i in range(1, len(g.modules)):
                g.modules[i].forward = g.later(i)
        yield len(active)
    finally:
        for g in active:
            g.input, g.outputs = None, ()
            for m in g.modules:
                if "forward" in m.__dict__:
                    del m.forward

"""Optional torch.compile of the model's non-attention modules for decode steps: fewer, fused kernels per step.

Each MLP and RMSNorm module of the model is routed, while decode steps run, through one compiled function
that takes the module as an argument, so all layers share one compiled graph per module class and shape
(no recompilation per layer). Attention stays the engine's. Inside a CUDA graph every kernel boundary
costs a few microseconds; a norm launched op by op is about seven kernels, compiled it is one.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

COMPILED_CLASSES = ("MLP", "RMSNorm")  # class-name suffixes of the modules routed through torch.compile
BACKEND = "inductor"


def _call(module: torch.nn.Module, *args):
    return type(module).forward(module, *args)


@functools.cache
def compiled_call(mode: str | None, backend: str):
    """The shared compiled function for a torch.compile mode (None: the default mode)."""
    return torch.compile(_call, mode=mode, backend=backend, dynamic=False, fullgraph=True)


def compiled_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m).__name__.endswith(COMPILED_CLASSES)]


@contextlib.contextmanager
def compiled(model: torch.nn.Module, mode: str | None) -> Iterator[int]:
    """Route the model's MLPs and RMSNorms through torch.compile inside the block (yields how many)."""
    fn = compiled_call(mode, BACKEND)
    modules = compiled_modules(model)
    try:
        for m in modules:
            m.forward = functools.partial(fn, m)
        yield len(modules)
    finally:
        for m in modules:
            if "forward" in m.__dict__:
                del m.forward

"""The one autograd mode of all engine work: outside inference mode and without gradients, whatever the caller's.

Tensors made inside torch.inference_mode may never again be updated in place outside it, and the engine keeps
buffers (cache, step inputs, indexer state, FlashInfer's page lists) that later calls update in place. Making
and updating them all in this mode keeps them ordinary tensors, so a caller may use the engine from either mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def engine_mode() -> Iterator[None]:
    """Plain tensors, no autograd graph: usable as a context manager or a decorator (engine_mode())."""
    with torch.inference_mode(False), torch.no_grad():
        yield

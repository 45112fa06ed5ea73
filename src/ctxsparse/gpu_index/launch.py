"""Launch helpers shared by the indexer kernels: interpreter detection, SM count, and work splitting.

Every kernel here walks long rows (scores, labels, page bounds) in programs of whole tiles; how many
programs a row gets depends only on shapes, so a launch never waits on the device and a CUDA graph can
replay it.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
from triton.runtime.interpreter import InterpretedFunction


@triton.jit
def _probe():
    pass


# True when TRITON_INTERPRET=1 was set before this module was imported: kernels then run on CPU tensors.
INTERPRETED = isinstance(_probe, InterpretedFunction)
PROGRAMS_PER_SM = 16  # short programs, many per SM: loads in flight, and a short tail when the grid drains


@functools.cache
def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device; 2 under the interpreter, so tiny tests still split rows."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 2


def split_rows(rows: int, length: int, block: int, sms: int, per_sm: int = PROGRAMS_PER_SM) -> tuple[int, int]:
    """(parts, chunk): cut each of `rows` rows of `length` items into `parts` chunks of whole `block` tiles.

    Aim for per_sm * sms programs in all; a row never gets more parts than it has tiles, and no part is
    empty: (parts - 1) * chunk < length <= parts * chunk.
    """
    tiles = max(1, math.ceil(length / block))
    want = max(1, min(tiles, math.ceil(per_sm * sms / max(rows, 1))))
    per_part = math.ceil(tiles / want)
    return math.ceil(tiles / per_part), per_part * block


def check_device(name: str, *tensors: torch.Tensor) -> torch.device:
    """The one device of `tensors`; CUDA, or CPU under the interpreter. Raises with `name` otherwise."""
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"{name}: all inputs must be on one device; got {sorted(map(str, devices))}.")
    device = devices.pop()
    if device.type != "cuda" and not INTERPRETED:
        raise ValueError(f"{name}: the Triton kernels need CUDA tensors (or TRITON_INTERPRET=1); got {device}.")
    return device

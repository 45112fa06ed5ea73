"""How the sparse decode kernel cuts its work: split-K counts from the kernel's occupancy and the launch shape.

Pure arithmetic on shapes (no device data, no host synchronisation), so a planned call can be replayed
from a CUDA graph and tested on any machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DecodeConfig:
    """Launch shape: selected tokens per tile, warps, pipeline depth, and split limits (programs_per_sm
    steers the split count only where the kernel's occupancy cannot be read, as in the interpreter)."""

    block_n: int
    num_warps: int = 4
    num_stages: int = 3  # 3: the index tile two iterations ahead, the K/V tiles one ahead
    programs_per_sm: int = 8
    max_splits: int = 64
    pdl: bool = True  # programmatic dependent launch of the merge kernel (used on Hopper and newer)


def default_config(head_dim: int) -> DecodeConfig:
    """8 KB [BLOCK_N, D] bf16 tiles (32 rows at D = 128): the best geometric mean of an H100 sweep."""
    return DecodeConfig(block_n=max(16, 4096 // head_dim))


PROLOGUE_TILES = 0.5  # a program's start (query, first index and K/V round trips) costs about half a tile


def plan_splits(
    rows: int, num_slots: int, num_sms: int, config: DecodeConfig, resident_per_sm: int | None = None
) -> tuple[int, int]:
    """(splits, chunk): cut each row's k slots into splits of `chunk` slots, whole tiles each.

    With the kernel's occupancy known (resident_per_sm programs fit on an SM at once), the programs run
    in waves of num_sms * resident_per_sm, and a wave lasts as long as one split: pick the split count
    that minimises waves * (tiles per split + PROLOGUE_TILES), ties to fewer splits. A last wave filled
    by a few programs costs as much as a full one, so programs = rows * splits should sit just under a
    multiple of the wave. Without the occupancy (the CPU interpreter), aim for programs_per_sm * SMs.
    Shapes only: no device data, no host synchronisation.
    """
    blocks = max(1, math.ceil(num_slots / config.block_n))
    most = max(1, min(blocks, config.max_splits))
    if resident_per_sm is None:
        want = max(1, min(math.ceil(config.programs_per_sm * num_sms / max(rows, 1)), most))
        per_split = math.ceil(blocks / want)
    else:
        wave = resident_per_sm * num_sms
        cost = lambda bps: math.ceil(rows * math.ceil(blocks / bps) / wave) * (bps + PROLOGUE_TILES)
        per_split = min(sorted({math.ceil(blocks / s) for s in range(1, most + 1)}, reverse=True), key=cost)
    return math.ceil(blocks / per_split), per_split * config.block_n


def resident_programs(n_regs: int, shared_bytes: int, num_warps: int, props) -> int:
    """Programs of one kernel that fit on an SM at once: the least of the register, shared-memory,
    thread and block limits (registers go to warps in units of 256, the driver keeps 1 KB per block)."""
    warp_regs = math.ceil(max(n_regs, 1) * 32 / 256) * 256
    by_regs = getattr(props, "regs_per_multiprocessor", 65536) // (warp_regs * num_warps)
    by_smem = getattr(props, "shared_memory_per_multiprocessor", 233472) // (shared_bytes + 1024)
    by_threads = getattr(props, "max_threads_per_multi_processor", 2048) // (32 * num_warps)
    return max(1, min(by_regs, by_smem, by_threads, 32))

"""What an episode records: one TurnRecord per model call and one EpisodeRecord per episode."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TurnRecord:
    """One model call: how the context grew, what was prefilled densely, decoded, and how faithful it was.

    context_tokens: the rendered prompt's length; prefilled_tokens: tokens run densely into the kept cache
    this turn (only those that extend what was cached); question_tokens: the newest message's tokens, run
    sparse before decoding (0 when the method is dense or the phase is 'decode'); reprefill: the prompt did
    not extend the cached tokens, so the cache was cut back to the common prefix.
    """

    turn: int
    context_tokens: int
    prefilled_tokens: int
    question_tokens: int
    generated_tokens: int
    reprefill: bool
    density: float | None = None
    mass_recall: float | None = None
    top1_agreement: float | None = None
    kl: float | None = None
    decode_s: float = 0.0
    reply: str = ""
    command: str = ""
    returncode: int | None = None
    limits_hit: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EpisodeRecord:
    """One agent episode on one task under one (method, sparsity)."""

    task: str
    model: str
    method: str
    sparsity: float
    phase: str
    seed: int
    resolved: bool
    turns: int
    tokens_generated: int
    final_context_tokens: int
    exit_reason: str
    isolation: str
    wall_s: float
    reprefills: int = 0
    patch: str = ""
    test_output: str = ""
    turn_records: list[TurnRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

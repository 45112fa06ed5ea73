"""Decoding many rows from a filled cache, each row's forced inputs first: the study's path through the engine.

Row b's first len(feeds[b]) inputs are given (its question tokens, say); after them it feeds back its own
greedy tokens. All rows advance in lockstep, one token per step, so rows with questions of different
lengths share every batched (CUDA-graph) step: the step's input is `where(step < feed length, feed, last
greedy token)`, computed on the device. The output of step feeds[b]-1 is row b's first answer token.
Where the engine has no batched step for the selector but one select() can serve all rows (batch_select),
the feeds go as one block instead (each row's own, right-padded; no real token sees the padding), then
fixed-shape steps follow, captured in a CUDA graph on a GPU when the selector honours static_k.

Rows end at a stop token, at their token cap, or when stop_when (a test on the answer so far) says so; the
host checks every `check_every` steps (one sync) and cuts each answer where it ended, so the answers do not
depend on how often it checks. keep_logits keeps every step's logits, for a teacher-forced comparison.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ctxsparse.engine.batch_select import BatchSelection, batchable, graph_ready
from ctxsparse.engine.grad_mode import engine_mode
from ctxsparse.engine.hook import attached
from ctxsparse.engine.step import DecodeStep

CHECK_EVERY = 8


@dataclass
class ForcedRow:
    """One row's answer tokens (a stop token included when it ended on one) and when it was seen finished."""

    tokens: list[int]
    finished_s: float


@dataclass
class ForcedRun:
    """The rows in input order, and (keep_logits) where each row's logits are: logits_of(row, n)."""

    rows: list[ForcedRow]
    kept: list[torch.Tensor] | None  # per forward call: [B, T, V] float32 logits
    where: list[list[tuple[int, int]]]  # per row, per position it produced: (call, t)
    calls: int
    mode: str

    def logits_of(self, row: int, n: int) -> torch.Tensor:
        """[n, V]: the logits row `row` produced after each of its first n inputs."""
        if self.kept is None:
            raise ValueError("This run kept no logits: pass keep_logits=True.")
        return torch.stack([self.kept[c][row, t] for c, t in self.where[row][:n]])


def _check_inputs(engine, lengths, feeds, caps, stop_when) -> None:
    batch = len(lengths)
    shape = engine.cache.shape
    if not 1 <= batch <= shape.max_batch:
        raise ValueError(f"Got {batch} rows; the engine's cache holds 1 to max_batch={shape.max_batch}.")
    if len(feeds) != batch or len(caps) != batch or (stop_when is not None and len(stop_when) != batch):
        raise ValueError("Give one feed, one token cap (and one stop_when, if any) per row.")
    for b, (n, feed, cap) in enumerate(zip(lengths, feeds, caps, strict=True)):
        if not feed:
            raise ValueError(f"Row {b} has no input to feed: give at least its next token.")
        if cap < 0:
            raise ValueError(f"Row {b}'s token cap must be >= 0; got {cap}.")
        if n + len(feed) + cap > shape.capacity:
            raise ValueError(
                f"Row {b} needs {n + len(feed) + cap} cache slots but the cache holds {shape.capacity} per row; "
                "make the engine with a larger max_len."
            )


@engine_mode()
def run_forced(
    engine,
    lengths: Sequence[int],
    feeds: Sequence[Sequence[int]],
    caps: Sequence[int],
    stop_token_ids: Sequence[int] = (),
    *,
    stop_when: Sequence[Callable[[list[int]], bool] | None] | None = None,
    keep_logits: bool = False,
    check_every: int = CHECK_EVERY,
) -> ForcedRun:
    """Greedy-decode rows 0..B-1 of engine's cache, whose first lengths[b] slots hold a context.

    feeds[b]: row b's forced inputs (at least one); caps[b]: answer tokens it may make (0: none, its run
    ends with its feed). Slots past lengths[b] are overwritten. Returns each row's answer tokens.
    On the batched step the feeds go one token per step; on the reference path with a batched select they go
    as one block (each row's own, right-padded; padding is never visible to a row's real tokens).
    """
    _check_inputs(engine, lengths, feeds, caps, stop_when)
    batch, dev = len(lengths), engine.device
    flen = [len(f) for f in feeds]
    stop = set(int(t) for t in stop_token_ids)
    checks = list(stop_when) if stop_when is not None else [None] * batch
    forced = torch.zeros(batch, max(flen), dtype=torch.long, device=dev)
    for b, feed in enumerate(feeds):
        forced[b, : len(feed)] = torch.tensor(list(feed), dtype=torch.long)
    flen_t = torch.tensor(flen, device=dev)
    engine.cache.lengths.zero_()
    engine.cache.lengths[:batch] = torch.tensor(list(lengths), dtype=torch.int32)
    engine.rows.reset()
    stepper = _Stepper(engine, batch, list(lengths), max(n - 1 + c for n, c in zip(flen, caps, strict=True)))
    block = stepper.mode.startswith("rows (batched select")
    # Forward calls: one block of the feeds then (cap - 1) steps; or one step per input.
    total = 1 + max(caps) - 1 if block else stepper.total
    track = _Track(batch, flen, caps, stop, checks, keep_logits)
    with attached(engine.model, engine._dispatch), stepper.session():
        prev = forced[:, 0]
        for call in range(total):
            if block and call == 0:
                logits = stepper.block(forced, flen)  # [B, F, V]
                prev = logits.argmax(-1).gather(1, (flen_t - 1).view(-1, 1)).squeeze(1)
                track.add(logits, logits.argmax(-1), flen)
            else:
                if not block and call < forced.shape[1]:
                    prev = torch.where(flen_t > call, forced[:, call], prev)
                logits = stepper.step(prev, total - call)
                prev = logits.argmax(-1)
                track.add(logits.unsqueeze(1), prev.view(-1, 1), None)
            if ((call + 1) % check_every == 0 or call + 1 == total) and track.check():
                break
    track.check()
    return ForcedRun(track.rows(), track.kept, track.where, track.calls, stepper.mode)


class _Track:
    """Each row's produced tokens by position, read to the host every few calls; answers cut where they end."""

    def __init__(self, batch, flen, caps, stop, checks, keep_logits) -> None:
        self.batch, self.flen, self.caps, self.stop, self.checks = batch, flen, caps, stop, checks
        self.kept: list[torch.Tensor] | None = [] if keep_logits else None
        self.where: list[list[tuple[int, int]]] = [[] for _ in range(batch)]
        self.tokens: list[tuple[torch.Tensor, list[int] | None]] = []  # per call: [B, T] tokens, valid T per row
        self.checked = 0
        self.answers: list[list[int]] = [[] for _ in range(batch)]
        self.done = [c == 0 for c in caps]
        self.ended = [0.0] * batch
        self.position = [0] * batch  # next position each row produces
        self.start = time.perf_counter()

    @property
    def calls(self) -> int:
        return len(self.tokens)

    def add(self, logits: torch.Tensor, tokens: torch.Tensor, valid: list[int] | None) -> None:
        """One forward call's logits [B, T, V] and greedy tokens [B, T]; valid[b]: row b's real positions."""
        call = len(self.tokens)
        if self.kept is not None:
            self.kept.append(logits.float().clone())
        for b in range(self.batch):
            self.where[b] += [(call, t) for t in range(tokens.shape[1] if valid is None else valid[b])]
        self.tokens.append((tokens, valid))

    def check(self) -> bool:
        """Read the new calls' tokens; True once every row has ended."""
        now = time.perf_counter() - self.start
        for tokens, valid in self.tokens[self.checked :]:
            host = tokens.tolist()
            for b in range(self.batch):
                for token in host[b][: len(host[b]) if valid is None else valid[b]]:
                    self._take(b, token, now)
        self.checked = len(self.tokens)
        return all(self.done)

    def _take(self, b: int, token: int, now: float) -> None:
        p = self.position[b]
        self.position[b] += 1
        if self.done[b] or p < self.flen[b] - 1:
            return
        answer, check = self.answers[b], self.checks[b]
        answer.append(token)
        if token in self.stop or len(answer) >= self.caps[b] or (check is not None and check(answer)):
            self.done[b], self.ended[b] = True, now

    def rows(self) -> list[ForcedRow]:
        now = time.perf_counter() - self.start
        return [ForcedRow(a, self.ended[b] if self.done[b] else now) for b, a in enumerate(self.answers)]


class _Stepper:
    """One forward of every row: the engine's batched step when it has one, else its reference path with one
    select() per layer over all rows when the selector allows (feeds as one block; then fixed-shape steps,
    captured in a CUDA graph on a GPU, when the selector honours static_k), else row by row."""

    def __init__(self, engine, batch: int, lengths: list[int], total: int) -> None:
        self.engine, self.batch, self.lengths, self.total = engine, batch, lengths, total
        self.graph_step = None
        sel = None if engine.dense else engine.selector
        if engine.mode != "rows":
            self.mode = engine.mode
        elif sel is None or batchable(sel):
            self.mode = "rows (batched select)"
            self.batched = BatchSelection(engine.cache, sel, engine.budget, engine.rows.model_key)
            self.static = graph_ready(sel)
        else:
            self.mode = "rows"

    @contextlib.contextmanager
    def session(self):
        engine = self.engine
        if engine.mode == "rows":
            if self.mode != "rows":
                engine._attend = self.batched
            try:
                yield
            finally:
                if self.graph_step is not None:
                    self.graph_step.release()
            return
        with engine.fast.session():
            engine._attend = engine.fast.attend
            engine.fast.begin(self.batch, self.lengths, self.total)
            yield

    def block(self, forced: torch.Tensor, flen: list[int]) -> torch.Tensor:
        """Every row's feed in one forward (reference path, batched select); logits [B, F, V]."""
        engine, b, width = self.engine, self.batch, forced.shape[1]
        self.batched.set_call(b, self.lengths, width)
        start = engine.cache.lengths[:b].view(b, 1).long()
        pos = start + torch.arange(width, device=forced.device)
        out = engine.model(input_ids=forced, position_ids=pos, use_cache=False, logits_to_keep=0)
        self.lengths = [n + f for n, f in zip(self.lengths, flen, strict=True)]
        engine.cache.lengths[:b] = torch.tensor(self.lengths, dtype=torch.int32)
        return out.logits

    def _fixed_step(self, steps_left: int) -> None:
        """The fixed-shape step for the steps after the block: captured on a GPU (eager elsewhere, or if the
        capture fails, which the mode then says)."""
        engine = self.engine
        cap = engine.cache.shape.capacity
        width = min(cap, max(self.lengths) + steps_left + 1)
        self.batched.fix(self.batch, width, engine.budget.tokens_for(width))
        self.graph_step = DecodeStep(engine.model, engine.cache, self.batch, prepare=self.batched.prepare)
        self.mode = "rows (batched select, fixed shapes)"
        if engine.device.type == "cuda":
            try:
                self.graph_step.capture()
                self.mode = "rows (batched select, CUDA graph)"
            except RuntimeError as err:  # an op the capture refuses: the same step, launched eagerly
                self.graph_step.graph = None
                self.mode = f"rows (batched select, fixed shapes; capture failed: {str(err)[:80]})"

    def step(self, token: torch.Tensor, steps_left: int = 1) -> torch.Tensor:
        engine, b = self.engine, self.batch
        if self.mode == "rows":
            logits = engine._forward_rows(list(range(b)), self.lengths, token.view(-1, 1).tolist(), sparse=True)
        elif not self.mode.startswith("rows"):
            return engine.fast.step(token)
        elif self.static:
            if self.graph_step is None:
                self._fixed_step(steps_left)
            logits = self.graph_step.run(token)
        else:
            self.batched.set_call(b, self.lengths, 1)
            pos = engine.cache.lengths[:b].view(b, 1).long()
            out = engine.model(input_ids=token.view(b, 1), position_ids=pos, use_cache=False, logits_to_keep=1)
            logits = out.logits[:, -1]
            engine.cache.lengths[:b] += 1
        self.lengths = [n + 1 for n in self.lengths]
        return logits

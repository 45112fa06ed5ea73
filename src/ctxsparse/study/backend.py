"""How the study runner reaches a model: a small backend contract, and the transformers implementation.

The runner only needs three things per model (prefill a context, decode one configuration from that
prefill, report the model's context limit), so tests can drive it with a fake backend and no model.
A session may also offer decode_many (several prefilled samples under one configuration, rows yielded as
they finish): the batched study path. TransformersSession implements it with batched transformers calls,
EngineSession (ctxsparse.study.engine_session) with ctxsparse.Engine; TransformersBackend picks one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ctxsparse.study.plan import Config

FIDELITY_KEYS = ("density", "mass_recall", "output_error", "kl", "top1_agreement")
# Dense decoding compared with itself: what a trace would measure, without paying for the trace.
DENSE_FIDELITY = {"density": 1.0, "mass_recall": 1.0, "output_error": 0.0, "kl": 0.0, "top1_agreement": 1.0}


@dataclass
class Prefilled:
    """A sample's context after the dense prefill; state is whatever the backend decodes from."""

    state: Any
    context_tokens: int
    prefill_s: float


@dataclass
class DecodeOutcome:
    """One decoded configuration: the text, its token count, timings and fidelity summary."""

    text: str
    new_tokens: int
    decode_s: float
    fidelity: dict[str, float | None] = field(default_factory=dict)
    steps: int | None = None


class ModelSession(Protocol):
    """One loaded model."""

    tokenizer: Any
    max_positions: int | None

    def prefill(self, sample: Any) -> Prefilled: ...

    def decode(self, prefilled: Prefilled, sample: Any, config: Config) -> DecodeOutcome:
        """Decode sample.question under config (method, sparsity, phase, new-token cap) from the prefill."""
        ...


class Backend(Protocol):
    """Opens model sessions by name (unknown names raise ValueError listing the known ones)."""

    def open(self, model: str) -> ModelSession: ...


class BatchedSession:
    """Sessions whose decode() is decode_many() over a batch of one (they also take stop_when)."""

    accepts_stop_when = True

    def decode(
        self, prefilled: Prefilled, sample: Any, config: Config, stop_when: Callable[[str], bool] | None = None
    ) -> DecodeOutcome:
        """One sample under one configuration (a batch of one)."""
        # Run the generator to its end, so any decoding session it opened is left before this returns.
        [(_, outcome)] = list(self.decode_many([prefilled], [sample], config, [stop_when]))
        return outcome


class TransformersSession(BatchedSession):
    """A transformers model and tokenizer, decoded through ctxsparse.study.batched_decode (one row or many)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_positions = getattr(model.config, "max_position_embeddings", None)

    def prefill(self, sample: Any) -> Prefilled:
        from ctxsparse.study.batched_decode import prefill_context

        start = time.perf_counter()
        pre = prefill_context(self.model, self.tokenizer, sample.context, chat=sample.chat)
        return Prefilled(pre, int(pre.input_ids.shape[-1]), time.perf_counter() - start)

    def decode_many(
        self,
        prefilled: Sequence[Prefilled],
        samples: Sequence[Any],
        config: Config,
        stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    ) -> Iterator[tuple[int, DecodeOutcome]]:
        """Decode the samples together under config; yields (index, outcome) as each one finishes."""
        from ctxsparse import Budget
        from ctxsparse.study.batched_decode import decode_batch

        dense = config.method.is_dense
        rows = decode_batch(
            [p.state for p in prefilled],
            [s.question for s in samples],
            config.method.spec,
            Budget(sparsity=1.0 if dense else config.sparsity),
            [config.new_tokens_for(s) for s in samples],
            phase="question" if dense else config.phase,
            trace=not dense,
            answer_prefixes=[s.answer_prefix for s in samples],
            stop_when=stop_when,
        )
        for j, row in rows:
            if dense:
                fidelity, steps = dict(DENSE_FIDELITY), None
            else:
                fidelity, steps = {k: _float_or_none(row.fidelity.get(k)) for k in FIDELITY_KEYS}, row.steps
            yield j, DecodeOutcome(row.text, len(row.token_ids), float(row.decode_s), fidelity, steps)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


DECODE_PATHS = ("auto", "engine", "transformers")


class TransformersBackend:
    """Loads models with ctxsparse.models.load_model on one device and dtype.

    decode_path: 'engine' decodes through ctxsparse.Engine (ctxsparse.study.engine_session), 'transformers'
    through batched transformers calls, 'auto' the engine unless engine_problem() names a reason. phase is the
    study's (the engine prefills the question under 'decode'); fidelity=False skips the engine's dense
    teacher-forced pass.
    """

    def __init__(self, device: str = "cpu", dtype: str = "auto", decode_path: str = "auto",
                 phase: str = "question", fidelity: bool = True,
                 dense_tensor_cores: bool | None = None) -> None:  # fmt: skip
        from ctxsparse.models import parse_dtype

        if decode_path not in DECODE_PATHS:
            raise ValueError(f"decode_path must be one of {', '.join(DECODE_PATHS)}; got {decode_path!r}.")
        self.device = device
        self.dtype = dtype
        self.decode_path, self.phase, self.fidelity = decode_path, phase, fidelity
        self.dense_tensor_cores = dense_tensor_cores  # the engine path's FlashInfer switch (see Engine)
        self._torch_dtype = parse_dtype(dtype)

    def open(self, model: str) -> TransformersSession | Any:
        from ctxsparse.models import load_model

        loaded, tokenizer = load_model(model, device=self.device, dtype=self._torch_dtype)
        if self.decode_path == "transformers":
            return TransformersSession(loaded, tokenizer)
        from ctxsparse.study.engine_session import EngineSession

        if self.decode_path == "auto" and engine_problem(loaded) is not None:
            return TransformersSession(loaded, tokenizer)
        return EngineSession(
            loaded, tokenizer, phase=self.phase, fidelity=self.fidelity, dense_tensor_cores=self.dense_tensor_cores
        )


def engine_problem(model: Any) -> str | None:
    """Why decode_path='auto' does not take the engine for this model, or None when it does: it takes a CUDA
    model of a family the engine serves, with no sliding window (the engine applies none), in a dtype and
    head size its kernels take."""
    from ctxsparse.engine.fast import fast_path_problem
    from ctxsparse.engine.hook import SUPPORTED_FAMILIES
    from ctxsparse.selectors import Dense

    cfg = model.config
    family = getattr(cfg, "model_type", "")
    if family not in SUPPORTED_FAMILIES:
        return f"the engine serves {', '.join(SUPPORTED_FAMILIES)}, not {family!r}"
    if getattr(cfg, "sliding_window", None) is not None:
        return "the model attends within a sliding window, which the engine does not apply"
    param = next(model.parameters())
    if param.device.type != "cuda":
        return "the model is not on a CUDA device"
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return fast_path_problem(Dense(), param.device, param.dtype, head_dim)

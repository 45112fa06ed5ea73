"""Prefill a context densely once, then decode a question sparsely from copies of that cache."""

from __future__ import annotations

import contextlib
import copy
import inspect
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import DynamicCache

from ctxsparse.budget import Budget
from ctxsparse.fidelity import FidelityTrace, kl_divergence, top1_agreement
from ctxsparse.hf import sparse_decoding
from ctxsparse.selectors import Dense, make_selector
from ctxsparse.selectors.base import Selector

_MARK = "\u2063CTXSPARSE\u2063"


def chat_parts(tokenizer) -> tuple[str, str]:
    """The chat template's text before and after one user message (generation prompt included)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("This tokenizer has no chat template; pass chat=False to use raw text.")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": _MARK}], add_generation_prompt=True, tokenize=False
    )
    before, _, after = text.partition(_MARK)
    return before, after


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def _stop_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids |= set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set())
    return ids


class _PlainSession(contextlib.AbstractContextManager):
    """Stands in for a sparse session when decoding densely."""

    def __init__(self) -> None:
        self.trace = FidelityTrace(enabled=False)

    def __exit__(self, *exc) -> None:
        return None

    def dense(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


@dataclass
class Prefilled:
    """A densely prefilled context, reusable for any number of sparse decodes."""

    model: torch.nn.Module
    tokenizer: object
    input_ids: torch.Tensor
    cache: DynamicCache
    chat: bool
    prefill_s: float

    @property
    def num_tokens(self) -> int:
        return self.input_ids.shape[1]


@dataclass
class GenerationResult:
    """What a sparse decode produced: the answer, its tokens, fidelity and timings."""

    text: str
    token_ids: list[int]
    trace: FidelityTrace
    prompt_tokens: int
    prefill_s: float = 0.0
    decode_s: float = 0.0
    question_ids: list[int] = field(default_factory=list)


def _cache_kw(model: torch.nn.Module, cache: object) -> dict[str, object]:
    """The cache keyword of this transformers version: 'cache' (newer) or 'past_key_values' (older, and
    deprecated in the newer ones), so runs print no deprecation warning on either."""
    forward = getattr(type(model), "forward", None)
    name = _CACHE_KEYWORDS.get(type(model))
    if name is None:
        params = inspect.signature(forward).parameters if forward is not None else {}
        name = _CACHE_KEYWORDS[type(model)] = "cache" if "cache" in params else "past_key_values"
    return {name: cache}


_CACHE_KEYWORDS: dict[type, str] = {}


@torch.inference_mode()
def prefill(model: torch.nn.Module, tokenizer, context: str, chat: bool = True) -> Prefilled:
    """Run the context densely into a fresh cache (with the chat template's opening when chat=True)."""
    text = chat_parts(tokenizer)[0] + context if chat else context
    ids = torch.tensor([_ids(tokenizer, text, special=not chat)], device=model.device)
    if ids.shape[1] == 0:
        raise ValueError("The context is empty: give a context to prefill (or put the prompt in it).")
    cache = DynamicCache(config=model.config)
    start = time.perf_counter()
    model(input_ids=ids, **_cache_kw(model, cache), use_cache=True)
    return Prefilled(model, tokenizer, ids, cache, chat, time.perf_counter() - start)


def question_ids(pre: Prefilled, question: str, answer_prefix: str = "") -> list[int]:
    """Token ids of the question part: the question, the template's closing, the answer prefix."""
    return question_token_ids(pre.tokenizer, pre.chat, question, answer_prefix)


def question_token_ids(tokenizer, chat: bool, question: str, answer_prefix: str = "") -> list[int]:
    """question_ids() from the tokenizer and the chat flag alone (no prefill needed)."""
    text = question
    if chat:
        text = ("\n\n" if question else "") + question + chat_parts(tokenizer)[1]
    if answer_prefix:
        text += answer_prefix
    ids = _ids(tokenizer, text, special=False)
    if not ids:
        raise ValueError("The question is empty: give a question (or an answer prefix) to decode from.")
    return ids


@torch.inference_mode()
def decode(
    pre: Prefilled,
    question: str,
    selector: Selector | str,
    budget: Budget,
    max_new_tokens: int = 32,
    phase: Literal["question", "decode"] = "question",
    trace: bool = True,
    answer_prefix: str = "",
) -> GenerationResult:
    """Greedy decoding of the question from a copy of the prefilled cache, the question/decode steps sparse.

    With trace=True the same tokens are then run densely (teacher forced) to measure KL and top-1 agreement.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}.")
    model = pre.model
    q_ids = question_ids(pre, question, answer_prefix)
    cache = copy.deepcopy(pre.cache)
    stop = _stop_ids(model, pre.tokenizer)
    generated: list[int] = []
    sparse_rows: list[torch.Tensor] = []
    start = time.perf_counter()
    selector = make_selector(selector)
    # Dense decoding needs no session: plain attention, nothing to trace.
    plain = isinstance(selector, Dense)
    trace = trace and not plain
    session = _PlainSession() if plain else sparse_decoding(model, selector, budget, phase=phase, trace=trace)
    with session:
        q = torch.tensor([q_ids], device=model.device)
        if phase == "decode":
            with session.dense():
                logits = model(input_ids=q, **_cache_kw(model, cache), use_cache=True).logits[0]
        else:
            logits = model(input_ids=q, **_cache_kw(model, cache), use_cache=True).logits[0]
            if trace:
                sparse_rows.append(logits.float())
        next_id = int(logits[-1].argmax())
        while True:
            generated.append(next_id)
            if next_id in stop or len(generated) >= max_new_tokens:
                break
            step = torch.tensor([[next_id]], device=model.device)
            logits = model(input_ids=step, **_cache_kw(model, cache), use_cache=True).logits[0]
            if trace:
                sparse_rows.append(logits.float())
            next_id = int(logits[-1].argmax())
    decode_s = time.perf_counter() - start
    if trace and sparse_rows:
        fed = q_ids + generated[:-1]
        dense_cache = copy.deepcopy(pre.cache)
        dense = model(input_ids=torch.tensor([fed], device=model.device), **_cache_kw(model, dense_cache)).logits[0]
        session.trace.record_logits(dense[-sum(r.shape[0] for r in sparse_rows) :], torch.cat(sparse_rows))
    text = pre.tokenizer.decode([t for t in generated if t not in stop], skip_special_tokens=True)
    return GenerationResult(
        text=text.strip(),
        token_ids=generated,
        trace=session.trace,
        prompt_tokens=pre.num_tokens + len(q_ids),
        prefill_s=pre.prefill_s,
        decode_s=decode_s,
        question_ids=q_ids,
    )


def generate(
    model: torch.nn.Module,
    tokenizer,
    *,
    context: str,
    question: str,
    selector: Selector | str = "oracle_topk",
    budget: Budget | None = None,
    max_new_tokens: int = 32,
    phase: Literal["question", "decode"] = "question",
    chat: bool = True,
    trace: bool = True,
    answer_prefix: str = "",
    engine: bool = False,
) -> GenerationResult:
    """Prefill `context` densely, then decode `question` and the answer sparsely (greedy).

    engine=True runs it on ctxsparse.engine.Engine (static paged cache, CUDA graphs where possible); the
    result then carries no fidelity trace.
    """
    budget = budget if budget is not None else Budget(sparsity=10)
    if engine:
        return _generate_on_engine(model, tokenizer, context, question, selector, budget, max_new_tokens, phase,
                                   chat, answer_prefix)  # fmt: skip
    pre = prefill(model, tokenizer, context, chat=chat)
    return decode(
        pre,
        question,
        selector,
        budget,
        max_new_tokens=max_new_tokens,
        phase=phase,
        trace=trace,
        answer_prefix=answer_prefix,
    )


def _generate_on_engine(model, tokenizer, context, question, selector, budget, max_new_tokens, phase, chat,
                        answer_prefix) -> GenerationResult:  # fmt: skip
    """generate() on the engine: the same prompt and question tokens as prefill() and question_ids()."""
    from ctxsparse.engine import Engine

    text = chat_parts(tokenizer)[0] + context if chat else context
    ids = _ids(tokenizer, text, special=not chat)
    if not ids:
        raise ValueError("The context is empty: give a context to prefill (or put the prompt in it).")
    pre = Prefilled(model, tokenizer, torch.tensor([ids]), None, chat, 0.0)
    q_ids = question_ids(pre, question, answer_prefix)
    max_len = len(ids) + len(q_ids) + max_new_tokens
    with Engine(model, tokenizer, selector=selector, budget=budget, max_len=max_len, phase=phase) as engine:
        result = engine.generate(input_ids=[ids], questions=[q_ids], max_new_tokens=max_new_tokens)
    return GenerationResult(
        text=result.texts[0],
        token_ids=result.token_ids[0],
        trace=FidelityTrace(enabled=False),
        prompt_tokens=len(ids) + len(q_ids),
        prefill_s=result.prefill_s,
        decode_s=sum(result.step_ms) / 1e3,
        question_ids=q_ids,
    )


@dataclass
class TeacherForced:
    """Per-position comparison of sparse vs dense next-token distributions over fixed tokens."""

    kl: torch.Tensor
    agreement: torch.Tensor
    trace: FidelityTrace


@torch.inference_mode()
def teacher_forced(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    sparse_from: int,
    selector: Selector | str,
    budget: Budget,
    trace: bool = True,
) -> TeacherForced:
    """Positions >= sparse_from run sparse (the rest dense); row i compares the predictions after token
    sparse_from + i. Returns KL(dense || sparse) and top-1 agreement per such position."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must be [1, T]; got {tuple(input_ids.shape)}.")
    if not 0 < sparse_from < input_ids.shape[1]:
        raise ValueError(f"sparse_from must lie in (0, {input_ids.shape[1]}); got {sparse_from}.")
    ids = input_ids.to(model.device)
    cache = DynamicCache(config=model.config)
    model(input_ids=ids[:, :sparse_from], **_cache_kw(model, cache), use_cache=True)
    dense_cache = copy.deepcopy(cache)
    with sparse_decoding(model, selector, budget, phase="question", trace=trace) as session:
        sparse = model(input_ids=ids[:, sparse_from:], **_cache_kw(model, cache), use_cache=True).logits[0].float()
    dense = model(input_ids=ids[:, sparse_from:], **_cache_kw(model, dense_cache), use_cache=True).logits[0].float()
    session.trace.record_logits(dense, sparse)
    return TeacherForced(kl_divergence(dense, sparse), top1_agreement(dense, sparse), session.trace)

"""A conversation whose KV cache is kept across turns: each turn runs only the tokens that extend the cache.

Per turn, with prompt ids P (the chat template rendered with a generation prompt) and the cached ids C:

1. c = the common prefix of C and P, checked token for token; the cache is cut back to c (c < len(C) is a
   re-prefill, counted).
2. The history, P[c:b] with b = where the newest message starts, runs densely into the cache.
3. The question, P[b:], then the reply run under the selector and budget (the question-phase rule); for a
   dense method or phase 'decode' the question runs densely too and only the reply (or nothing) is sparse.
4. The cache is cut back to b and the question (plus the reply when traced, teacher forced) runs densely, so
   the cache again holds dense keys and values of exactly P. Traced turns compare those dense logits with
   the sparse ones (KL, top-1 agreement).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from ctxsparse.budget import Budget
from ctxsparse.fidelity import FidelityTrace
from ctxsparse.hf import sparse_decoding
from ctxsparse.selectors import Dense, make_selector
from ctxsparse.selectors.base import Selector


@dataclass
class TurnOutput:
    """The reply of one turn and what it cost."""

    text: str
    token_ids: list[int]
    context_tokens: int
    prefilled_tokens: int
    question_tokens: int
    reprefill: bool
    trace: FidelityTrace
    decode_s: float


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def stop_ids(model: torch.nn.Module, tokenizer: Any) -> set[int]:
    """Token ids that end a reply: the tokenizer's eos and the generation config's eos ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos = getattr(model.generation_config, "eos_token_id", None)
    return ids | (set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set()))


class KVConversation:
    """Greedy chat turns over one growing KV cache, sparse where the question-phase rule says."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        selector: Selector | str,
        budget: Budget,
        phase: str = "question",
        trace: bool = True,
    ) -> None:
        if phase not in ("question", "decode"):
            raise ValueError(f"phase must be 'question' or 'decode'; got {phase!r}.")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("The tokenizer has no chat template; the agent needs a chat model.")
        self.model, self.tokenizer = model, tokenizer
        self.selector = make_selector(selector)
        self.budget = budget
        self.dense = isinstance(self.selector, Dense) or budget.is_dense
        self.phase = phase
        self.trace = trace and not self.dense
        self.cache = DynamicCache(config=model.config)
        self.cached_ids: list[int] = []
        self.stop = stop_ids(model, tokenizer)
        self.reprefills = 0

    def render(self, messages: list[dict[str, Any]], generation_prompt: bool) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _forward(self, ids: list[int]) -> torch.Tensor:
        x = torch.tensor([ids], device=self.model.device)
        return self.model(input_ids=x, past_key_values=self.cache, use_cache=True).logits[0]

    def _cut(self, length: int) -> None:
        """Drop cached positions from `length` on (a negative crop removes that many tokens in every version)."""
        current = self.cache.get_seq_length()
        if current > length:
            self.cache.crop(length - current)

    def _question_start(self, messages: list[dict[str, Any]], prompt: list[int], cached: int) -> int:
        """Where the newest message's tokens begin in the prompt. A template that renders the history differently
        on its own (no prefix) falls back to the cached part: then everything new is the question."""
        if len(messages) < 2:
            return 0
        history = self.render(messages[:-1], generation_prompt=False)
        return len(history) if prompt[: len(history)] == history else cached

    @torch.inference_mode()
    def reply(self, messages: list[dict[str, Any]], max_new_tokens: int) -> TurnOutput:
        """Greedy reply to `messages` (OpenAI-style role/content dicts), reusing the cache kept from earlier turns."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}.")
        prompt = self.render(messages, generation_prompt=True)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and len(prompt) + max_new_tokens > limit:
            raise ValueError(f"The conversation needs {len(prompt) + max_new_tokens} positions; the model has {limit}.")
        start = time.perf_counter()
        common = common_prefix(self.cached_ids, prompt)
        reprefill = common < len(self.cached_ids)
        self.reprefills += reprefill
        sparse_question = not self.dense and self.phase == "question"
        boundary = self._question_start(messages, prompt, common) if sparse_question else len(prompt)
        # At least one token must run this turn to produce logits; a boundary before the cached part moves it.
        dense_from = min(common, boundary, len(prompt) - 1)
        self._cut(dense_from)
        prefilled = boundary - dense_from
        logits = self._forward(prompt[dense_from:boundary]) if prefilled > 0 else None
        question = prompt[boundary:] if sparse_question else []
        session = None if self.dense else sparse_decoding(self.model, self.selector, self.budget, trace=self.trace)
        sparse_rows: list[torch.Tensor] = []
        generated: list[int] = []
        if session is not None:
            session.__enter__()
        try:
            if question:
                logits = self._forward(question)
                sparse_rows.append(logits.float())
            next_id = int(logits[-1].argmax())
            while True:
                generated.append(next_id)
                if next_id in self.stop or len(generated) >= max_new_tokens:
                    break
                logits = self._forward([next_id])
                if self.trace:
                    sparse_rows.append(logits.float())
                next_id = int(logits[-1].argmax())
        finally:
            if session is not None:
                session.__exit__(None, None, None)
        trace = session.trace if session is not None else FidelityTrace(enabled=False)
        # Back to dense keys and values of exactly the prompt (teacher forcing the reply when traced).
        self._cut(boundary)
        if sparse_question or self.trace:
            fed = question + (generated[:-1] if self.trace else [])
            if fed:
                dense = self._forward(fed)
                if self.trace and sparse_rows:
                    rows = torch.cat(sparse_rows)
                    trace.record_logits(dense[-rows.shape[0] :].float(), rows)
                self._cut(len(prompt))
        self.cached_ids = list(prompt)
        text = self.tokenizer.decode([t for t in generated if t not in self.stop], skip_special_tokens=True)
        return TurnOutput(
            text=text,
            token_ids=generated,
            context_tokens=len(prompt),
            prefilled_tokens=prefilled + len(question),
            question_tokens=len(question),
            reprefill=reprefill,
            trace=trace,
            decode_s=time.perf_counter() - start,
        )

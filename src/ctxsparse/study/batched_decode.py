"""Greedy decoding of many prefilled samples at once under one configuration (the study's batched path).

Each sample was prefilled on its own (dense, once). Their caches are stacked with left padding: row j
holds [pad][context_j], then the question block [pad][question_j], then one column per generated token.
The attention mask hides every pad slot, so no selector ever reads one (selectors take visibility from the
mask), and explicit position ids give each row the positions it would have alone. All rows advance in
lockstep; a row is finished at its stop token, its token cap, or once stop_when says the scorer's verdict
can no longer change, and is yielded at once with its own fidelity (layer records sliced to that row; KL
and top-1 agreement from a dense teacher-forced pass over the rows finishing at that step).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from ctxsparse.budget import Budget
from ctxsparse.fidelity import kl_divergence, top1_agreement
from ctxsparse.generation import Prefilled, chat_parts, question_ids
from ctxsparse.hf import sparse_decoding
from ctxsparse.selectors import Dense, make_selector
from ctxsparse.selectors.base import Selector

LAYER_METRICS = ("density", "mass_recall", "output_error")


def cache_kwarg(model: torch.nn.Module) -> str:
    """The forward() argument naming the KV cache: 'cache' in recent transformers, else 'past_key_values'."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def last_logits_only(model: torch.nn.Module) -> dict[str, int]:
    """forward() kwargs that skip the vocabulary projection of all but the last position, where supported."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def context_token_ids(tokenizer: Any, context: str, chat: bool = True) -> list[int]:
    """Token ids of a context as the study prefills it (the chat template's opening first when chat=True)."""
    text = chat_parts(tokenizer)[0] + context if chat else context
    ids = tokenizer(text, add_special_tokens=not chat)["input_ids"]
    if not ids:
        raise ValueError("The context is empty: give a context to prefill (or put the prompt in it).")
    return list(ids)


@torch.inference_mode()
def prefill_context(model: torch.nn.Module, tokenizer: Any, context: str, chat: bool = True) -> Prefilled:
    """Dense prefill of one context into its own cache (the chat template's opening first when chat=True)."""
    ids = context_token_ids(tokenizer, context, chat)
    input_ids = torch.tensor([ids], device=model.device)
    cache = DynamicCache(config=model.config)
    start = time.perf_counter()
    model(input_ids=input_ids, use_cache=True, **{cache_kwarg(model): cache}, **last_logits_only(model))
    return Prefilled(model, tokenizer, input_ids, cache, chat, time.perf_counter() - start)


@dataclass
class RowResult:
    """One finished row: its tokens and text, decode wall time, and fidelity summary (None when dense)."""

    token_ids: list[int]
    text: str
    decode_s: float
    fidelity: dict[str, float | None] = field(default_factory=dict)
    steps: int | None = None


def stop_token_ids(model: torch.nn.Module, tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids |= set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set())
    return ids


class _Layout:
    """Padded batch geometry: context width C, question width Q, and the growing attention mask."""

    def __init__(self, pres: Sequence[Prefilled], qs: Sequence[list[int]], device: torch.device) -> None:
        self.n = [p.num_tokens for p in pres]
        self.q = [len(q) for q in qs]
        self.c, self.qw = max(self.n), max(self.q)
        b = len(pres)
        self.mask = torch.zeros(b, self.c + self.qw, dtype=torch.long, device=device)
        for j in range(b):
            self.mask[j, self.c - self.n[j] : self.c] = 1
            self.mask[j, self.c + self.qw - self.q[j] :] = 1
        self.device = device

    def question_inputs(self, qs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.full((len(qs), self.qw), pad_id, dtype=torch.long, device=self.device)
        pos = torch.zeros_like(ids)
        for j, q in enumerate(qs):
            ids[j, self.qw - len(q) :] = torch.tensor(q, device=self.device)
            pos[j, self.qw - len(q) :] = torch.arange(self.n[j], self.n[j] + len(q), device=self.device)
        return ids, pos

    def step_positions(self, step: int) -> torch.Tensor:
        """Positions of the token fed at lockstep step `step` (0 = the first generated token)."""
        return torch.tensor([[n + q + step] for n, q in zip(self.n, self.q, strict=True)], device=self.device)

    def grow(self) -> torch.Tensor:
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        return self.mask


def stacked_cache(model: torch.nn.Module, pres: Sequence[Prefilled], width: int, rows: Sequence[int]) -> DynamicCache:
    """A fresh cache holding the given rows' prefilled contexts, left-padded to `width` tokens."""
    cache = DynamicCache(config=model.config)
    for layer in range(len(pres[rows[0]].cache.layers)):
        keys, values = [], []
        for j in rows:
            src = pres[j].cache.layers[layer]
            pad = width - src.keys.shape[2]
            keys.append(torch.nn.functional.pad(src.keys, (0, 0, pad, 0)))
            values.append(torch.nn.functional.pad(src.values, (0, 0, pad, 0)))
        cache.update(torch.cat(keys), torch.cat(values), layer)
    return cache


@torch.inference_mode()
def decode_batch(
    pres: Sequence[Prefilled],
    questions: Sequence[str],
    selector: Selector | str,
    budget: Budget,
    max_new_tokens: Sequence[int],
    phase: str = "question",
    trace: bool = True,
    answer_prefixes: Sequence[str] | None = None,
    stop_when: Sequence[Callable[[str], bool] | None] | None = None,
) -> Iterator[tuple[int, RowResult]]:
    """Decode every row greedily from its own prefill; yields (row, RowResult) as each row finishes."""
    b = len(pres)
    if not b or len(questions) != b or len(max_new_tokens) != b:
        raise ValueError("decode_batch needs one question and one token cap per prefilled sample.")
    if min(max_new_tokens) < 1:
        raise ValueError(f"max_new_tokens must be >= 1; got {min(max_new_tokens)}.")
    model, tokenizer = pres[0].model, pres[0].tokenizer
    prefixes = answer_prefixes or [""] * b
    stops = stop_when or [None] * b
    qs = [question_ids(p, q, a) for p, q, a in zip(pres, questions, prefixes, strict=True)]
    layout = _Layout(pres, qs, model.device)
    kw = cache_kwarg(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    selector = make_selector(selector)
    plain = isinstance(selector, Dense)
    trace = trace and not plain
    stop_ids = stop_token_ids(model, tokenizer)
    cache = stacked_cache(model, pres, layout.c, range(b))
    session = (
        contextlib.nullcontext() if plain else sparse_decoding(model, selector, budget, phase="question", trace=trace)
    )
    generated: list[list[int]] = [[] for _ in range(b)]
    sparse_logits: list[torch.Tensor] = []  # per forward call: [B, T, V] logits of the sparse run (trace only)
    active = [True] * b
    start = time.perf_counter()
    with session as sparse:
        ids, pos = layout.question_inputs(qs, pad_id)
        dense_question = phase == "decode" and not plain
        keep = last_logits_only(model) if not trace or dense_question else {}
        with sparse.dense() if dense_question else contextlib.nullcontext():
            logits = model(
                input_ids=ids, attention_mask=layout.mask, position_ids=pos, use_cache=True, **{kw: cache}, **keep
            )
        if trace and not dense_question:
            sparse_logits.append(logits.logits.float())
        next_ids = logits.logits[:, -1].argmax(-1)
        step = 0
        while True:
            finished = []
            tokens = next_ids.tolist()  # one device sync per step
            for j in range(b):
                if not active[j]:
                    continue
                token = tokens[j]
                generated[j].append(token)
                check = stops[j]
                done = token in stop_ids or len(generated[j]) >= max_new_tokens[j]
                if done or (check is not None and check(answer_text(tokenizer, generated[j], stop_ids))):
                    active[j] = False
                    finished.append(j)
            if finished:
                elapsed = time.perf_counter() - start
                fidelity = _fidelity(sparse, sparse_logits, pres, qs, generated, finished, layout, phase, trace)
                for j in finished:
                    fid, steps = fidelity.get(j, ({}, None))
                    text = answer_text(tokenizer, generated[j], stop_ids)
                    yield j, RowResult(generated[j], text, elapsed, fid, steps)
            if not any(active):
                break
            mask = layout.grow()
            out = model(
                input_ids=next_ids.view(b, 1),
                attention_mask=mask,
                position_ids=layout.step_positions(step),
                use_cache=True,
                **{kw: cache},
            )
            if trace:
                sparse_logits.append(out.logits.float())
            next_ids = out.logits[:, -1].argmax(-1)
            step += 1


def answer_text(tokenizer: Any, tokens: list[int], stop_ids: set[int]) -> str:
    """The answer as the scorer reads it: stop tokens and special tokens dropped, stripped."""
    return tokenizer.decode([t for t in tokens if t not in stop_ids], skip_special_tokens=True).strip()


def _fidelity(sparse, sparse_logits, pres, qs, generated, rows, layout, phase, trace) -> dict[int, tuple[dict, int]]:
    """Per finished row: layer metrics over its own records, KL and top-1 agreement vs a dense pass.

    Rows finishing at one step have generated the same number of tokens, so their records are sliced at once.
    """
    if not trace:
        return {}
    question_sparse = phase != "decode"
    device = sparse_logits[0].device if sparse_logits else pres[0].input_ids.device
    index = torch.tensor(rows, device=device)
    steps = len(generated[rows[0]]) - 1
    # Question positions of each finishing row inside the padded question block: [R, 1, Qw].
    valid = torch.stack([torch.arange(layout.qw, device=device) >= layout.qw - len(qs[j]) for j in rows]).unsqueeze(1)
    means: dict[str, list[float | None]] = {}
    for name in LAYER_METRICS:
        total = torch.zeros(len(rows), device=device, dtype=torch.float64)
        count = torch.zeros(len(rows), device=device, dtype=torch.float64)
        for records in sparse.trace.layers[name].values():
            first = 0
            if question_sparse and records:
                part = records[0].index_select(0, index.to(records[0].device)).float()
                mask = valid.to(part.device).expand_as(part)
                total += (part * mask).sum((1, 2)).to(total)
                count += mask.sum((1, 2)).to(count)
                first = 1
            if steps > 0:
                block = torch.stack(records[first : first + steps]).index_select(1, index.to(records[0].device))
                total += block.float().sum((0, 2, 3)).to(total)
                count += block[:, 0].numel()
        means[name] = [float(t / c) if c > 0 else None for t, c in zip(total.tolist(), count.tolist(), strict=True)]
    kl, agree = _teacher_forced(sparse, sparse_logits, pres, qs, generated, rows, layout, question_sparse)
    out = {}
    for r, j in enumerate(rows):
        fid: dict[str, float | None] = {m: means[m][r] for m in LAYER_METRICS}
        fid["kl"] = float(kl[j].mean()) if j in kl and kl[j].numel() else None
        fid["top1_agreement"] = float(agree[j].float().mean()) if j in agree and agree[j].numel() else None
        out[j] = (fid, int(agree[j].numel()) if j in agree else 0)
    return out


def _teacher_forced(sparse, sparse_logits, pres, qs, generated, rows, layout, question_sparse):
    """Dense logits over each row's question + generated tokens (teacher forced), compared with the sparse run."""
    model = pres[0].model
    steps = len(generated[rows[0]]) - 1
    width = layout.qw + steps
    sparse_rows = {}
    for j in rows:
        parts = []
        if question_sparse:
            parts.append(sparse_logits[0][j, layout.qw - len(qs[j]) :])
        parts += [s[j, -1:] for s in sparse_logits[1 if question_sparse else 0 :][: len(generated[j]) - 1]]
        sparse_rows[j] = torch.cat(parts) if parts else None
    if all(v is None for v in sparse_rows.values()):
        return {}, {}
    cache = stacked_cache(model, pres, layout.c, rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=model.device)
    pos = torch.zeros_like(ids)
    mask = layout.mask[rows][:, : layout.c + width].clone()
    mask[:, layout.c :] = 0
    for r, j in enumerate(rows):
        fed = qs[j] + generated[j][:-1]
        ids[r, width - len(fed) :] = torch.tensor(fed, device=model.device)
        pos[r, width - len(fed) :] = torch.arange(layout.n[j], layout.n[j] + len(fed), device=model.device)
        mask[r, layout.c + width - len(fed) :] = 1
    with sparse.dense():
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, **{cache_kwarg(model): cache})
    dense = out.logits.float()
    kl, agree = {}, {}
    for r, j in enumerate(rows):
        if sparse_rows[j] is None:
            continue
        d = dense[r, width - sparse_rows[j].shape[0] :]
        kl[j] = kl_divergence(d, sparse_rows[j]).cpu()
        agree[j] = top1_agreement(d, sparse_rows[j]).cpu()
    return kl, agree

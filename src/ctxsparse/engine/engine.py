"""Engine: generation with the engine's own static paged KV cache, dense prefill and fast decode steps.

Construction sizes and allocates the cache (refusing one that cannot fit) and picks how decode steps
run: 'graph' (CUDA: the batched step captured once per batch size in a CUDA graph and replayed),
'eager' (the same batched step, launched op by op) or 'rows' (the reference path: each row through the
selector's own select(), on any device and for any selector). The model's own modules do all the
non-attention math; see ctxsparse.engine.hook. On the batched paths the q/k/v and gate/up projections run
as one GEMM each (the first call fuses the weights once: the modules' parameters become views of one
tensor per group, with the same values), rotary embeddings and RMSNorms as one kernel each; see fused.py,
rotary.py and rms_norm.py.
All engine work runs in engine_mode() (no autograd, outside inference mode), so its buffers accept calls
made from inside or outside torch.inference_mode.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Literal

import torch

from ctxsparse.budget import Budget
from ctxsparse.engine.cache import CacheShape, PagedKVCache, check_fits
from ctxsparse.engine.fast import FastDecode, fast_path_problem, step_buffer_bytes
from ctxsparse.engine.grad_mode import engine_mode
from ctxsparse.engine.hook import attached, check_family
from ctxsparse.engine.result import EngineResult
from ctxsparse.engine.rows import RowAttention
from ctxsparse.engine.sampling import Sampling
from ctxsparse.models import model_key
from ctxsparse.selectors import Dense, make_selector
from ctxsparse.selectors.base import Selector

PHASES = ("question", "decode")
STOP_CHECK_EVERY = 8  # graph/eager steps between host checks of "every row has stopped" (one sync each)


def _positions_limit(model: torch.nn.Module) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


class Engine:
    """Generation for transformers causal LMs (Llama, Qwen2, Qwen3, Mistral) on a static paged KV cache.

    selector/budget: dense when selector is None or 'dense'; else the sparse method (name or Selector) and
    its Budget. phase: 'question' (question and generated tokens sparse) or 'decode' (only generated tokens).
    graphs: True (CUDA graphs required), False (never) or 'auto' (graphs when the device and the selector
    allow, else the eager reference path, reported in the result's notes). cache: an existing cache of the
    same shape to reuse (e.g. to compare methods on one context); it is then not released by close().
    compile: on the batched path, run the model's MLPs and RMSNorms through torch.compile (True: its default
    mode; or a mode name such as 'max-autotune-no-cudagraphs', which compiles for minutes).
    beyond_positions: allow max_len past the model's positions (as eager transformers calls do; the study's
    lengths count the prompt's tokens, which may overshoot the nominal length by a few).
    dense_tensor_cores: FlashInfer's switch for dense steps: None times both settings and keeps the faster; True
    or False pins one, for runs that repeat token for token (they round differently, and near ties pick either).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer=None,
        *,
        selector: Selector | str | None = None,
        budget: Budget | None = None,
        max_batch: int = 1,
        max_len: int = 4096,
        page_size: int = 16,
        phase: Literal["question", "decode"] = "question",
        graphs: bool | Literal["auto"] = "auto",
        prefill_chunk: int = 2048,
        cache: PagedKVCache | None = None,
        compile: bool | str = False,
        beyond_positions: bool = False,
        dense_tensor_cores: bool | None = None,
    ) -> None:
        check_family(model)
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}; got {phase!r}.")
        if graphs not in (True, False, "auto"):
            raise ValueError(f"graphs must be True, False or 'auto'; got {graphs!r}.")
        if dense_tensor_cores not in (None, True, False):
            raise ValueError(f"dense_tensor_cores must be None (time both), True or False; got {dense_tensor_cores!r}.")
        for name, value in (("max_batch", max_batch), ("max_len", max_len), ("page_size", page_size),
                            ("prefill_chunk", prefill_chunk)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}.")
        limit = _positions_limit(model)
        if limit is not None and max_len > limit and not beyond_positions:
            raise ValueError(f"max_len={max_len} exceeds the model's {limit} positions; lower max_len to {limit}.")
        window = getattr(model.config, "sliding_window", None)
        if window is not None and max_len > window:
            raise ValueError(
                f"This model attends within a sliding window of {window} tokens, which the engine does not apply; "
                f"lower max_len to {window} or less."
            )
        self.model, self.tokenizer = model, tokenizer
        self.selector = Dense() if selector is None else make_selector(selector)
        self.dense = isinstance(self.selector, Dense)
        if budget is None and not self.dense:
            raise ValueError("A sparse selector needs a budget, e.g. Budget(sparsity=10).")
        if budget is not None and not isinstance(budget, Budget):
            raise TypeError(f"budget must be a ctxsparse.Budget; got {type(budget).__name__}.")
        self.budget = budget if budget is not None else Budget(sparsity=1)
        self.phase, self.prefill_chunk = phase, prefill_chunk
        self.device = next(model.parameters()).device
        self.notes: list[str] = []
        cfg = model.config
        shape = CacheShape(
            num_layers=cfg.num_hidden_layers,
            max_batch=max_batch,
            max_len=max_len,
            page_size=page_size,
            num_kv_heads=cfg.num_key_value_heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            dtype=next(model.parameters()).dtype,
        )
        self.mode = self._pick_mode(graphs, shape)
        extra = 0
        if self.mode != "rows":
            extra = step_buffer_bytes(shape, self.selector, self.budget, cfg.vocab_size, cfg.num_attention_heads)
        if cache is not None and cache.shape != shape:
            raise ValueError(f"cache= must have this engine's shape {shape}; got {cache.shape}.")
        if cache is None:
            check_fits(shape, self.device, extra)
        self.cache = cache if cache is not None else PagedKVCache(shape, self.device)
        self._owns_cache = cache is None
        self.rows = RowAttention(self.cache, None if self.dense else self.selector, self.budget, model_key(model))
        if compile is not False and not isinstance(compile, (bool, str)):
            raise TypeError(f"compile must be True, False or a torch.compile mode name; got {compile!r}.")
        mode = None if compile is False else ("default" if compile is True else compile)
        self.fast = FastDecode(model, self.cache, self.selector, self.budget, graphs=self.mode == "graph",
                               compile_mode=mode, dense_tensor_cores=dense_tensor_cores)  # fmt: skip
        if mode is not None and self.mode == "rows":
            self.notes.append("compile= applies to the batched path only; the reference path runs uncompiled")
        self._attend = self.rows

    # -- set-up ---------------------------------------------------------------------------------
    def _pick_mode(self, graphs: bool | str, shape: CacheShape) -> str:
        problem = fast_path_problem(self.selector, self.device, shape.dtype, shape.head_dim)
        if graphs is False:
            return "eager" if problem is None else "rows"
        if problem is None and self.device.type != "cuda":
            problem = "CUDA graphs need a CUDA device"
        if problem is None:
            return "graph"
        if graphs is True:
            raise ValueError(f"graphs=True: {problem}. Use graphs='auto' to fall back to the eager reference path.")
        self.notes.append(f"eager reference path (no CUDA graph): {problem}")
        return "rows"

    def close(self) -> None:
        """Release the cache and the captured graphs."""
        self.fast.release()
        if self._owns_cache:
            self.cache.release()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inputs ---------------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str], special: bool) -> list[list[int]]:
        if self.tokenizer is None:
            raise ValueError("Engine needs a tokenizer to take text; give input_ids instead, or pass a tokenizer.")
        return [list(self.tokenizer(t, add_special_tokens=special)["input_ids"]) for t in texts]

    def _prompt_rows(self, prompts, input_ids, attention_mask) -> list[list[int]]:
        if (prompts is None) == (input_ids is None):
            raise ValueError("Give exactly one of prompts (texts) or input_ids.")
        if prompts is not None:
            return self._encode([prompts] if isinstance(prompts, str) else list(prompts), special=True)
        if isinstance(input_ids, torch.Tensor):
            ids = input_ids.tolist() if input_ids.dim() == 2 else [input_ids.tolist()]
            if attention_mask is not None:  # drop (left or right) padding: padding is never written to the cache
                mask = attention_mask.tolist() if attention_mask.dim() == 2 else [attention_mask.tolist()]
                ids = [[t for t, m in zip(row, mrow, strict=True) if m] for row, mrow in zip(ids, mask, strict=True)]
            return ids
        return [list(map(int, row)) for row in input_ids]

    def _check_rows(self, rows: list[list[int]], questions: list[list[int]], max_new_tokens: int) -> None:
        shape = self.cache.shape
        if not rows or len(rows) > shape.max_batch:
            raise ValueError(f"Got {len(rows)} prompts; the engine serves 1 to max_batch={shape.max_batch}.")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer; got {max_new_tokens!r}.")
        limit = _positions_limit(self.model)
        for i, (row, q) in enumerate(zip(rows, questions, strict=True)):
            if not row:
                raise ValueError(f"Prompt {i} is empty: give at least one token.")
            total = len(row) + len(q) + max_new_tokens
            if limit is not None and len(row) + len(q) > limit:
                raise ValueError(f"Prompt {i} has {len(row) + len(q)} tokens, more than the model's {limit} positions.")
            if total > shape.max_len:
                raise ValueError(
                    f"Prompt {i} needs {total} cache slots ({len(row) + len(q)} prompt + {max_new_tokens} new "
                    f"tokens) but max_len={shape.max_len}: raise max_len or lower max_new_tokens."
                )

    # -- running the model ----------------------------------------------------------------------
    def _forward_rows(self, rows: list[int], starts: list[int], ids: list[list[int]], sparse: bool) -> torch.Tensor:
        """One forward of equally long token runs of `rows` starting at `starts`; last logits [len(rows), V]."""
        self.rows.set_call(rows, starts, sparse)
        self._attend = self.rows
        t = len(ids[0])
        input_ids = torch.tensor(ids, device=self.device)
        pos = torch.tensor(starts, device=self.device).view(-1, 1) + torch.arange(t, device=self.device)
        logits = self.model(input_ids=input_ids, position_ids=pos, use_cache=False, logits_to_keep=1).logits[:, -1]
        self.cache.lengths[torch.tensor(rows, device=self.device)] += t
        return logits

    def _dispatch(self, layer, query, key, value, scale):
        return self._attend(layer, query, key, value, scale)

    def _prefill(self, prompts: list[list[int]], questions: list[list[int]]) -> torch.Tensor:
        """Dense chunked prefill of every row, then its question; last logits [B, V]."""
        last = []
        for b, (ids, q) in enumerate(zip(prompts, questions, strict=True)):
            dense_q = not q or self.phase == "decode" or self.dense
            ids = ids + q if dense_q else ids
            for start in range(0, len(ids), self.prefill_chunk):
                logits = self._forward_rows([b], [start], [ids[start : start + self.prefill_chunk]], sparse=False)
            if not dense_q:
                logits = self._forward_rows([b], [len(ids)], [q], sparse=True)
            last.append(logits)
        return torch.cat(last)

    # -- generate -------------------------------------------------------------------------------
    @engine_mode()
    def generate(
        self,
        prompts: str | Sequence[str] | None = None,
        *,
        input_ids: torch.Tensor | Sequence[Sequence[int]] | None = None,
        attention_mask: torch.Tensor | None = None,
        questions: Sequence[str] | Sequence[Sequence[int]] | None = None,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_token_ids: Sequence[int] | None = None,
    ) -> EngineResult:
        """Generate up to max_new_tokens per row. prompts (texts) or input_ids (with an attention_mask marking
        padding) are the densely prefilled context; questions, when given, follow each prompt and run sparse
        under phase='question'. Stops a row at any stop token (the tokenizer's and model's EOS by default)."""
        sampling = Sampling(temperature, top_p, seed)
        rows = self._prompt_rows(prompts, input_ids, attention_mask)
        if questions is None:
            qs: list[list[int]] = [[] for _ in rows]
        elif len(questions) != len(rows):
            raise ValueError(f"Got {len(questions)} questions for {len(rows)} prompts; give one per prompt.")
        else:
            qs = [self._encode([q], special=False)[0] if isinstance(q, str) else list(q) for q in questions]
        self._check_rows(rows, qs, max_new_tokens)
        self.cache.lengths.zero_()
        self.rows.reset()
        with attached(self.model, self._dispatch):
            start = time.perf_counter()
            logits = self._prefill(rows, qs)
            prefill_s = time.perf_counter() - start
            lengths = [len(r) + len(q) for r, q in zip(rows, qs, strict=True)]
            return self._run(lengths, logits, None, max_new_tokens, sampling, stop_token_ids, prefill_s)

    @engine_mode()
    def decode_from_cache(
        self,
        lengths: Sequence[int],
        tokens: Sequence[int],
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_token_ids: Sequence[int] | None = None,
    ) -> EngineResult:
        """Decode from a cache whose first lengths[b] slots of row b already hold a context (an earlier prefill,
        or one written by the caller, such as a benchmark's synthetic context); tokens[b] is row b's next input."""
        sampling = Sampling(temperature, top_p, seed)
        if len(tokens) != len(lengths):
            raise ValueError(f"Give one next token per row; got {len(tokens)} tokens for {len(lengths)} rows.")
        self._check_rows([[0] * n for n in lengths], [[] for _ in lengths], max_new_tokens)
        self.cache.lengths.zero_()
        self.cache.lengths[: len(lengths)] = torch.tensor(list(lengths), dtype=torch.int32)
        self.rows.reset()
        first = torch.tensor(list(tokens), dtype=torch.long, device=self.device)
        with attached(self.model, self._dispatch):
            return self._run(list(lengths), None, first, max_new_tokens, sampling, stop_token_ids, 0.0)

    def _run(self, lengths, logits, first, max_new_tokens, sampling, stop_token_ids, prefill_s) -> EngineResult:
        """Choose the first token (from the prefill's logits, or given), then decode; build the result."""
        stop = set(self._stop_ids() if stop_token_ids is None else stop_token_ids)
        gen = sampling.generator(self.device)
        token = sampling.choose(logits, gen) if first is None else first
        tokens, step_ms = self._decode(len(lengths), lengths, token, sampling, gen, stop, max_new_tokens)
        return self._result(tokens, stop, step_ms, prefill_s)

    def _stop_ids(self) -> list[int]:
        ids = set()
        if self.tokenizer is not None and self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids |= set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set())
        return sorted(ids)

    def _decode(self, batch, lengths, token, sampling, gen, stop, max_new_tokens):
        """Decode steps until every row has stopped or made max_new_tokens; ([B, T] tokens, ms per step)."""
        stop_t = torch.tensor(sorted(stop), device=self.device, dtype=torch.long)
        finished = torch.isin(token, stop_t)
        out = [token]
        fast = self.mode != "rows"
        with self.fast.session() if fast else contextlib.nullcontext():
            return self._steps(batch, lengths, token, sampling, gen, stop_t, finished, out, max_new_tokens, fast)

    def _steps(self, batch, lengths, token, sampling, gen, stop_t, finished, out, max_new_tokens, fast):
        if fast:
            self._attend = self.fast.attend  # before begin(): it may capture the step
            self.fast.begin(batch, lengths, max_new_tokens)
        timer = _StepTimer(self.device)
        for step in range(1, max_new_tokens):
            if fast and step % STOP_CHECK_EVERY == 0 and bool(finished.all()):
                break
            if not fast and bool(finished.all()):
                break
            timer.start()
            if fast:
                logits = self.fast.step(token)
            else:
                logits = self._forward_rows(list(range(batch)), lengths, token.view(-1, 1).tolist(), sparse=True)
                lengths = [n + 1 for n in lengths]
            token = sampling.choose(logits, gen)
            timer.stop()
            finished |= torch.isin(token, stop_t)
            out.append(token)
        return torch.stack(out, 1), timer.ms()

    def _result(self, tokens: torch.Tensor, stop: set[int], step_ms: list[float], prefill_s: float) -> EngineResult:
        token_ids = []
        for row in tokens.tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in stop), len(row))
            token_ids.append(row[:cut])
        texts = [
            self.tokenizer.decode([t for t in row if t not in stop], skip_special_tokens=True).strip()
            if self.tokenizer is not None
            else ""
            for row in token_ids
        ]
        attention = "selector (per row)" if self.mode == "rows" else self.fast.attention_name
        return EngineResult(texts, token_ids, step_ms, prefill_s, self.mode, attention, list(self.notes))


class _StepTimer:
    """Per-step wall time: CUDA events on a GPU (read once at the end, no sync per step), else perf_counter."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def start(self) -> None:
        self.marks.append(self._mark())

    def stop(self) -> None:
        self.marks.append(self._mark())

    def _mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def ms(self) -> list[float]:
        pairs = zip(self.marks[::2], self.marks[1::2], strict=True)
        if not self.cuda:
            return [(b - a) * 1e3 for a, b in pairs]
        torch.cuda.synchronize()
        return [a.elapsed_time(b) for a, b in pairs]

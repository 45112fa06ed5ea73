"""The study's batched path on ctxsparse.Engine: many samples per configuration, one prefill per sample.

prefill() only tokenizes; decode_many() prefills the batch's contexts into rows of one shared paged cache the
first time it sees them (each sample once: a later configuration over a subset of them reorders the rows
in place), then decodes the configuration with an engine on that cache. The question and the answer run
through the engine's batched step (a CUDA graph on GPUs), the question tokens fed one per step
(engine.forced). Under phase 'decode' the question is prefilled densely with the context instead.

Fidelity of sparse rows: KL and top-1 agreement against a dense teacher-forced pass over the same tokens
(what the transformers path measures). The per-layer attention metrics (density, mass recall, output
error) need the attention weights, which the engine's kernels never form: they are left empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ctxsparse.budget import Budget
from ctxsparse.engine.forced import ForcedRun, run_forced
from ctxsparse.fidelity import kl_divergence, top1_agreement
from ctxsparse.generation import question_token_ids
from ctxsparse.study.backend import DENSE_FIDELITY, FIDELITY_KEYS, BatchedSession, DecodeOutcome, Prefilled
from ctxsparse.study.batched_decode import answer_text, context_token_ids, stop_token_ids
from ctxsparse.study.plan import Config

PREFILL_CHUNK = 8192  # a study context prefills in one forward (causal attention with no mask)
LEN_STEP = 1024  # the shared cache's row length is rounded up to this, so a few sizes serve a whole study


@dataclass(eq=False)
class SampleTokens:
    """A sample's token ids (the context with the chat opening; the question with its closing and answer
    prefix) and, once prefilled, its dense next-token choice after the question (phase 'decode')."""

    context: list[int]
    question: list[int]
    cap: int
    first_token: int | None = None
    prefilled: list[Prefilled] = field(default_factory=list)
    hf: Any = None  # its transformers prefill, made only for configurations the engine would run row by row


class EngineSession(BatchedSession):
    """A model served by ctxsparse.Engine for the study (decode_many), its rows in one shared cache.

    rows: the most samples decoded at once (larger batches are decoded in parts). phase: the study's phase
    (under 'decode' the question is prefilled with the context). fidelity: compare sparse rows with a dense
    teacher-forced pass (KL, top-1 agreement); False skips that pass.
    """

    def __init__(self, model: Any, tokenizer: Any, rows: int = 256, phase: str = "question",
                 fidelity: bool = True, dense_tensor_cores: bool | None = None) -> None:  # fmt: skip
        from ctxsparse.engine.hook import check_family

        check_family(model)
        self.model, self.tokenizer, self.rows, self.fidelity = model, tokenizer, rows, fidelity
        self.phase, self.dense_tensor_cores = phase, dense_tensor_cores
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.cache = None
        self.engines: dict[tuple, Any] = {}
        self.resident: list[SampleTokens] = []
        self.with_question = False
        self.prefills = 0
        self.modes: dict[str, str] = {}  # configuration label -> how its last batch was decoded
        self._hf = None

    # -- the ModelSession contract -------------------------------------------------------------
    def prefill(self, sample: Any) -> Prefilled:
        """Tokenize the sample; its context is written to the cache by the first decode that needs it."""
        tokens = SampleTokens(
            context_token_ids(self.tokenizer, sample.context, chat=sample.chat),
            question_token_ids(self.tokenizer, sample.chat, sample.question, sample.answer_prefix),
            int(getattr(sample, "max_new_tokens", 32)),
        )
        pre = Prefilled(tokens, len(tokens.context), 0.0)
        tokens.prefilled.append(pre)
        return pre

    def decode_many(
        self,
        prefilled: Sequence[Prefilled],
        samples: Sequence[Any],
        config: Config,
        stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    ) -> Iterator[tuple[int, DecodeOutcome]]:
        """Decode the samples together under config; yields (index, outcome) for every sample, once its batch
        (decoded in lockstep) and the batch's dense teacher pass are done, a second or so on a GPU."""
        if self._row_by_row(config):
            self.modes[config.label()] = "transformers (batched)"
            yield from self._transformers_decode(prefilled, samples, config, stop_when)
            return
        items = [p.state for p in prefilled]
        checks = list(stop_when) if stop_when is not None else [None] * len(items)
        caps = [config.new_tokens_for(s) for s in samples]
        for at in range(0, len(items), self.rows):
            part = slice(at, at + self.rows)
            for j, outcome in self._decode(items[part], caps[part], checks[part], config):
                yield at + j, outcome

    # -- decoding -------------------------------------------------------------------------------
    def _row_by_row(self, config: Config) -> bool:
        """Whether the engine would run this configuration row by row (no GPU pipeline, no batched select)."""
        return not config.method.is_dense and self._engine(config, build=False) == "rows"

    def _transformers_decode(self, prefilled, samples, config, stop_when) -> Iterator[tuple[int, DecodeOutcome]]:
        """Such configurations decode on the batched transformers path, from its own prefill of each sample."""
        from ctxsparse.study.backend import TransformersSession

        if self._hf is None:
            self._hf = TransformersSession(self.model, self.tokenizer)
        pres = []
        for p, sample in zip(prefilled, samples, strict=True):
            t = p.state
            if t.hf is None:
                t.hf = self._hf.prefill(sample)
                self.prefills += 1
            pres.append(t.hf)
        yield from self._hf.decode_many(pres, samples, config, stop_when)

    def _decode(self, items, caps, checks, config) -> list[tuple[int, DecodeOutcome]]:
        dense = config.method.is_dense
        # Dense decodes from whichever prefill the rows hold (the same tokens either way).
        if dense:
            with_question = self.with_question if self._holds(items) else self.phase == "decode"
        else:
            with_question = config.phase == "decode"
        self._make_resident(items, with_question)
        lengths = [len(t.context) + (len(t.question) if with_question else 0) for t in items]
        # Under a prefilled question the first answer token is the prefill's: it is fed, and counts as given.
        given = [[t.first_token] if with_question else [] for t in items]
        feeds = [g if with_question else list(t.question) for g, t in zip(given, items, strict=True)]
        caps_left, tests = [], []
        for g, cap, check in zip(given, caps, checks, strict=True):
            ended = bool(g) and (g[0] in self.stop_ids or cap <= 1 or (check is not None and check(self._text(g))))
            caps_left.append(0 if ended else cap - len(g))
            tests.append(None if check is None else self._token_test(check, g))
        keep = self.fidelity and not dense
        engine = self._engine(config)
        run = run_forced(engine, lengths, feeds, caps_left, sorted(self.stop_ids), stop_when=tests, keep_logits=keep)
        kernel = "" if engine.mode == "rows" else engine.fast.attention_name
        self.modes[config.label()] = f"{run.mode}: {kernel}" if kernel else run.mode
        answers = [g + r.tokens for g, r in zip(given, run.rows, strict=True)]
        compared = self._teacher(lengths, feeds, answers, with_question, run) if keep else {}
        out = []
        for j, answer in enumerate(answers):
            fidelity, steps = dict(DENSE_FIDELITY), None
            if not dense:
                kl, agree = compared.get(j, (None, None))
                fidelity = dict.fromkeys(FIDELITY_KEYS)
                if agree is not None:
                    fidelity.update(kl=float(kl.mean()), top1_agreement=float(agree.float().mean()))
                steps = 0 if agree is None else int(agree.numel())
            outcome = DecodeOutcome(self._text(answer), len(answer), run.rows[j].finished_s, fidelity, steps)
            out.append((j, outcome))
        return out

    def _text(self, tokens: list[int]) -> str:
        return answer_text(self.tokenizer, tokens, self.stop_ids)

    def _token_test(self, check: Callable[[str], bool], given: list[int]) -> Callable[[list[int]], bool]:
        return lambda tokens: check(self._text(given + tokens))

    def _teacher(self, lengths, feeds, answers, with_question, run: ForcedRun) -> dict[int, tuple]:
        """Per row (KL, agreement) at each position the sparse run predicted, against dense teacher forcing.

        Positions: the question's and every answer token's but the last (question sparse), or every answer
        token's but the last (question prefilled). The dense pass feeds exactly the tokens the sparse run fed.
        """
        if with_question:
            forced = [a[:-1] for a in answers]
        else:
            forced = [f + a[:-1] for f, a in zip(feeds, answers, strict=True)]
        todo = [j for j, f in enumerate(forced) if f]
        if not todo:
            return {}
        teacher = run_forced(self._engine(None), [lengths[j] for j in todo], [forced[j] for j in todo],
                             [1] * len(todo), keep_logits=True)  # fmt: skip
        out = {}
        for r, j in enumerate(todo):
            n = len(forced[j])
            dense, sparse = teacher.logits_of(r, n), run.logits_of(j, n)
            out[j] = (kl_divergence(dense, sparse).cpu(), top1_agreement(dense, sparse).cpu())
        return out

    def _holds(self, items: list[SampleTokens]) -> bool:
        return all(any(t is r for r in self.resident) for t in items)

    # -- the shared cache and its rows ---------------------------------------------------------
    def _engine(self, config: Config | None, build: bool = True):
        """The engine of a configuration (None: dense) on the shared cache, made once per cache.

        build=False only says how that engine would decode: 'rows' when row by row, else 'batched'."""
        from ctxsparse.engine import Engine

        key = ("dense",) if config is None or config.method.is_dense else (config.method.spec, config.sparsity,
                                                                           config.phase)  # fmt: skip
        if not build:
            return self._how(key[0])
        if key not in self.engines:
            sparse = key != ("dense",)
            self.engines[key] = Engine(
                self.model,
                self.tokenizer,
                selector=config.method.spec if sparse else None,
                budget=Budget(sparsity=config.sparsity) if sparse else None,
                max_batch=self.cache.shape.max_batch,
                max_len=self.cache.shape.max_len,
                phase=config.phase if sparse else "question",
                cache=self.cache,
                prefill_chunk=PREFILL_CHUNK,
                beyond_positions=True,
                dense_tensor_cores=self.dense_tensor_cores,
            )
        return self.engines[key]

    def _how(self, spec: str) -> str:
        from ctxsparse.engine.batch_select import batchable
        from ctxsparse.engine.fast import fast_path_problem
        from ctxsparse.selectors import make_selector

        if spec == "dense":
            return "batched"
        selector = make_selector(spec)
        param = next(self.model.parameters())
        cfg = self.model.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        fast = param.device.type == "cuda" and fast_path_problem(selector, param.device, param.dtype, head_dim) is None
        return "batched" if fast or batchable(selector) else "rows"

    def _make_resident(self, items: list[SampleTokens], with_question: bool) -> None:
        """Rows 0..m-1 of the cache hold items' prefills: reorder resident rows, or prefill a new batch."""
        if with_question == self.with_question and self._holds(items):
            order = [next(i for i, r in enumerate(self.resident) if r is t) for t in items]
            if order != list(range(len(items))):
                rest = [i for i in range(len(self.resident)) if i not in order]
                self._permute(order + rest)
            return
        need = max(len(t.context) + len(t.question) + t.cap for t in items) + 1
        self._ensure_cache(len(items), need)
        for engine in self.engines.values():
            engine.fast.release()  # graphs captured for the previous batch's k
        dense = self._engine(None)
        self.resident, self.with_question = list(items), with_question
        for row, t in enumerate(items):
            self._prefill_row(dense, row, t, with_question)

    def _prefill_row(self, dense, row: int, t: SampleTokens, with_question: bool) -> None:
        from ctxsparse.engine.grad_mode import engine_mode
        from ctxsparse.engine.hook import attached

        ids = t.context + (t.question if with_question else [])
        sync = torch.cuda.synchronize if dense.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        with engine_mode(), attached(self.model, dense._dispatch):
            dense.rows.reset()
            for at in range(0, len(ids), dense.prefill_chunk):
                logits = dense._forward_rows([row], [at], [ids[at : at + dense.prefill_chunk]], sparse=False)
        t.first_token = int(logits.argmax(-1)[0])
        sync()
        seconds = time.perf_counter() - start
        for pre in t.prefilled:
            pre.prefill_s = seconds
        self.prefills += 1

    def _permute(self, order: list[int]) -> None:
        """Move resident row order[i] to row i (every layer's K and V, and the resident list)."""
        n = len(order)
        index = torch.tensor(order, device=self.cache.device)
        for layer in range(self.cache.shape.num_layers):
            for pages in self.cache.rows(layer):
                pages[:n] = pages[:n].index_select(0, index)
        self.resident = [self.resident[i] for i in order]

    def _ensure_cache(self, rows: int, need: int) -> None:
        """A shared cache of at least `rows` rows of `need` slots (the old one, and its engines, dropped)."""
        from ctxsparse.engine.cache import CacheShape, PagedKVCache, check_fits

        if self.cache is not None and self.cache.shape.max_batch >= rows and self.cache.shape.max_len >= need:
            return
        self.close()
        cfg = self.model.config
        max_len = -(-need // LEN_STEP) * LEN_STEP
        if self.max_positions is not None and need <= self.max_positions:
            max_len = min(max_len, self.max_positions)
        shape = CacheShape(
            num_layers=cfg.num_hidden_layers,
            max_batch=rows,
            max_len=max_len,
            page_size=16,
            num_kv_heads=cfg.num_key_value_heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            dtype=next(self.model.parameters()).dtype,
        )
        device = next(self.model.parameters()).device
        check_fits(shape, device, extra_bytes=shape.max_batch * cfg.vocab_size * 4 * 64)
        self.cache = PagedKVCache(shape, device)

    def close(self) -> None:
        """Release the engines and the shared cache."""
        for engine in self.engines.values():
            engine.close()
        self.engines.clear()
        if self.cache is not None:
            self.cache.release()
        self.cache, self.resident = None, []

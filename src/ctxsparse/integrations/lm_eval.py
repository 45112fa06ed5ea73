"""lm-evaluation-harness model `ctxsparse`: Hugging Face's HFLM with generate_until decoded sparsely.

Importing this module registers the model; run lm-eval through it so the registration happens first:

    python -m ctxsparse.integrations.lm_eval --model ctxsparse \\
        --model_args pretrained=smollm2-135m,method=oracle_topk,sparsity=20 --tasks <task> --device cpu

method is any selector spec make_selector reads (join several parameters with ';', since model_args
are split on ',': method=sink_window:sink=4;window=64); sparsity >= 1 (k = ceil(N / sparsity)); phase is
'decode' (the prompt is prefilled densely, generated tokens read sparsely; the default) or 'question'
(the prompt's last line, after its last line break, is read sparsely too). pretrained also takes the
ctxsparse built-in names (smollm2-135m, random:<shape>). Loglikelihood requests (multiple choice,
perplexity) run dense: sparsity applies to decoding, and the model says so when they arrive.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from ctxsparse.budget import Budget
from ctxsparse.hf import PHASES, sparse_decoding
from ctxsparse.selectors.registry import make_selector

log = logging.getLogger(__name__)
MODEL_NAME = "ctxsparse"
DENSE_NOTICE = (
    "ctxsparse: loglikelihood requests run DENSE (sparsity applies to generate_until only); "
    "scores of multiple-choice and perplexity tasks are the dense model's."
)


def _known_methods() -> str:
    from ctxsparse.selectors.registry import SELECTORS

    return ", ".join(sorted(SELECTORS))


def check_model_args(method: str, sparsity: float | str, phase: str) -> tuple[Any, float]:
    """The selector and sparsity from model_args; ValueError naming the valid values otherwise."""
    method = str(method).replace(";", ",")  # model_args split on ',': several parameters are joined with ';'
    try:
        selector = make_selector(method)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"ctxsparse model_args: unknown method {method!r}. Valid methods: {_known_methods()} "
            f"(optionally with parameters, e.g. method=sink_window:sink=4). Cause: {err}"
        ) from err
    try:
        value = float(sparsity)
    except ValueError:
        value = float("nan")
    if not value >= 1 or value == float("inf"):
        raise ValueError(
            f"ctxsparse model_args: sparsity must be a number >= 1 (1 = dense, 20 = read 1 token in 20); "
            f"got {sparsity!r}."
        )
    if phase not in PHASES:
        raise ValueError(f"ctxsparse model_args: phase must be one of {', '.join(PHASES)}; got {phase!r}.")
    return selector, value


@register_model(MODEL_NAME)
class CtxSparseLM(HFLM):
    """HFLM whose generate_until decodes with `method` at `sparsity`; loglikelihood stays dense."""

    def __init__(
        self,
        pretrained: Any = "smollm2-135m",
        method: str = "oracle_topk",
        sparsity: float | str = 10.0,
        phase: str = "decode",
        **kwargs: Any,
    ) -> None:
        self.selector, self.sparsity = check_model_args(method, sparsity, phase)
        self.method, self.phase = str(method).replace(";", ","), phase
        if isinstance(pretrained, str) and _is_builtin(pretrained):
            from ctxsparse.models import load_model

            device = kwargs.get("device") or "cpu"
            pretrained, tokenizer = load_model(pretrained, device=device, dtype=kwargs.pop("dtype", None))
            kwargs.setdefault("tokenizer", tokenizer)
        super().__init__(pretrained=pretrained, **kwargs)
        self._dense_notice_shown = False
        self.sparse_generations = 0

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._notice_dense()
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        self._notice_dense()
        return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

    def _notice_dense(self) -> None:
        if not self._dense_notice_shown:
            log.warning(DENSE_NOTICE)
            print(DENSE_NOTICE)
            self._dense_notice_shown = True

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any):
        """The harness's generate call inside a sparse-decoding session (the prompt's prefill dense)."""
        budget = Budget(sparsity=self.sparsity)
        self.sparse_generations += 1
        if self.phase == "decode":
            with sparse_decoding(self.model, self.selector, budget, phase="decode", trace=False):
                return super()._model_generate(context, max_length, stop, **generation_kwargs)
        split = self._question_start(context)
        with sparse_decoding(self.model, self.selector, budget, phase="question", trace=False) as session:
            cache = _dense_prefix_cache(self.model, context[:, :split], session, self.tokenizer.pad_token_id)
            generation_kwargs[_cache_kwarg(self.model)] = cache
            return super()._model_generate(context, max_length, stop, **generation_kwargs)

    def _question_start(self, context: torch.Tensor) -> int:
        """Where the sparse part begins: after the last line break of the prompt (the latest over the batch)."""
        starts = []
        for row in context.tolist():
            text_ids = [t for t in row if t != self.tokenizer.pad_token_id]
            pad = len(row) - len(text_ids)
            start = len(text_ids) - 1
            while start > 0 and "\n" not in self.tokenizer.decode(text_ids[start - 1 : start]):
                start -= 1
            starts.append(pad + max(start, 1))
        return min(max(starts), context.shape[1] - 1)


def _is_builtin(name: str) -> bool:
    from ctxsparse.models import MODEL_ALIASES

    return name in MODEL_ALIASES or name.startswith("random:")


def _cache_kwarg(model) -> str:
    """'cache' where the model's forward takes it (recent transformers), else 'past_key_values'."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _dense_prefix_cache(model, prefix: torch.Tensor, session, pad_id: int | None):
    """Prefill the dense part of the prompt into a cache that model.generate then continues from."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    mask = (prefix != pad_id).long() if pad_id is not None else None
    with session.dense(), torch.inference_mode():
        model(input_ids=prefix, attention_mask=mask, use_cache=True, **{_cache_kwarg(model): cache})
    return cache


if __name__ == "__main__":
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()

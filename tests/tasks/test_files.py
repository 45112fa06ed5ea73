"""JSON-lines importers: RULER and LongBench rows detected from their fields; clear errors otherwise."""

import json

import pytest

from ctxsparse.tasks import FileTask, get_task, score
from ctxsparse.tasks.files import detect_format, split_ruler_input

RULER_ROWS = [
    {
        "index": i,
        "input": f"Some special magic numbers are hidden in the text.\nfiller {i} needle 12{i}\n"
        f"What are all the special magic numbers for key-{i}?",
        "outputs": [f"12{i}"],
        "length": 1000 * (i + 1),
        "answer_prefix": " Answer: The special magic numbers for key are",
    }
    for i in range(4)
]
LONGBENCH_ROWS = [
    {"context": "Paris is the capital of France.", "input": "What is the capital?", "answers": ["Paris"]},
    {"context": "Counting text.", "input": "", "answers": ["3", "three"], "dataset": "passage_count"},
]


def write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    return str(path)


def test_ruler_file(tmp_path, tokenizer):
    task = get_task(write(tmp_path / "niah_multikey_1.jsonl", RULER_ROWS))
    assert isinstance(task, FileTask) and task.format == "ruler" and task.name == "niah_multikey_1"
    samples = task.generate(tokenizer, 0, 3)
    assert [s.index for s in samples] == [0, 1, 2]
    first = samples[0]
    assert first.context == "Some special magic numbers are hidden in the text.\nfiller 0 needle 120"
    assert first.question == "What are all the special magic numbers for key-0?"
    assert first.answers == ("120",) and first.metric == "string_match_all" and first.chat
    assert first.answer_prefix == RULER_ROWS[0]["answer_prefix"]
    assert first.meta["length"] == 1000 and first.meta["format"] == "ruler"
    assert score("numbers: 120", first) == 1.0


def test_ruler_length_filter(tmp_path, tokenizer):
    task = get_task(write(tmp_path / "vt.jsonl", RULER_ROWS))
    assert [s.meta["length"] for s in task.generate(tokenizer, 2500, 10)] == [1000, 2000]
    with pytest.raises(ValueError, match="shortest: 1000"):
        task.generate(tokenizer, 500, 1)


def test_ruler_qa_files_use_string_match_part(tmp_path, tokenizer):
    rows = [{"input": "Docs.\nQuestion: who?", "outputs": ["Ann", "Anna"]}]
    sample = get_task(write(tmp_path / "qa_1.jsonl", rows)).generate(tokenizer, 4096, 1)[0]
    assert sample.metric == "string_match_part" and score("It is Ann.", sample) == 1.0


def test_templated_ruler_input_is_kept_whole():
    text = "<|im_start|>user\nHaystack.\nWhat is the number?<|im_end|>\n<|im_start|>assistant\n"
    context, question, chat = split_ruler_input(text)
    assert not chat and context + question == text
    assert question.startswith("What is the number?")


def test_longbench_file(tmp_path, tokenizer):
    task = get_task(write(tmp_path / "hotpot.jsonl", LONGBENCH_ROWS))
    assert task.format == "longbench"
    first, second = task.generate(tokenizer, 4096, 5)
    assert "Paris is the capital of France." in first.context
    assert first.question == "Question: What is the capital?"
    assert first.metric == "string_match_part" and first.answer_prefix == "Answer:"
    assert second.question.startswith("Question: Answer based on the text")
    assert score("three", second) == 1.0 and second.meta["dataset"] == "passage_count"


def test_row_overrides(tmp_path, tokenizer):
    rows = [{**LONGBENCH_ROWS[0], "metric": "string_match_all", "max_new_tokens": 7}]
    sample = get_task(write(tmp_path / "x.jsonl", rows)).generate(tokenizer, 0, 1)[0]
    assert sample.metric == "string_match_all" and sample.max_new_tokens == 7
    with pytest.raises(ValueError, match="unknown"):
        get_task(write(tmp_path / "y.jsonl", [{**rows[0], "metric": "rouge"}])).generate(tokenizer, 0, 1)


def test_bad_fields_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"fields \['prompt', 'target'\].*RULER.*LongBench"):
        get_task(write(tmp_path / "bad.jsonl", [{"prompt": "x", "target": "y"}]))
    with pytest.raises(ValueError, match="mixes"):
        get_task(write(tmp_path / "mixed.jsonl", [RULER_ROWS[0], LONGBENCH_ROWS[0]]))
    with pytest.raises(ValueError, match="no rows"):
        get_task(write(tmp_path / "empty.jsonl", []))
    (tmp_path / "broken.jsonl").write_text('{"input": 1}\n{oops\n')
    with pytest.raises(ValueError, match="broken.jsonl:2"):
        get_task(str(tmp_path / "broken.jsonl"))
    with pytest.raises(ValueError, match="missing.jsonl does not exist"):
        get_task(str(tmp_path / "missing.jsonl"))


def test_detect_format_prefers_longbench_when_both_fit():
    assert detect_format({"context": "", "input": "", "answers": [], "outputs": []}) == "longbench"
    assert detect_format({"input": "", "outputs": []}) == "ruler"

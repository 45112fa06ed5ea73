"""Every bad input is a clear error naming the input and the fix, found before work, with nothing written."""

import json
import os

import pytest
import torch

from ctxsparse import models
from ctxsparse.cli.main import main
from ctxsparse.study import backend as study_backend
from ctxsparse.study import store as store_module

TINY = "random:tiny-llama"
GRID = ["--sparsity", "10", "--lengths", "256", "--samples", "1", "--max-new-tokens", "2", "--no-progress"]


@pytest.fixture()
def no_model_loads(monkeypatch):
    """Fail the test if a model is loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(study_backend.TransformersBackend, "open", refuse)
    monkeypatch.setattr(models, "load_model", refuse)


@pytest.fixture()
def bad_files(tmp_path):
    """name -> (path, what the message must say): binary, not UTF-8, a directory, missing."""
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\x00\x01\x02\xff" * 8)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"input": "caf\xe9", "outputs": ["x"]}\n'.encode("latin-1"))
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    return {
        "binary": (binary, "is a binary file"),
        "latin": (latin, "is not UTF-8 text (byte 0xe9 at offset 14); convert it"),
        "folder": (folder, "is a directory"),
        "missing": (tmp_path / "missing.jsonl", "does not exist"),
    }


def _study(tmp_path, *extra):
    return ["study", "--model", TINY, *GRID, "--db", str(tmp_path / "r.db"), *extra]


def _refused(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n"), err
    assert [line for line in err.splitlines() if "error" in line] == [err.splitlines()[-1]], err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("kind", ["binary", "latin", "folder", "missing"])
def test_study_task_file_unreadable(tmp_path, capsys, no_model_loads, bad_files, kind):
    path, says = bad_files[kind]
    _refused(capsys, _study(tmp_path, "--tasks", str(path)), f"task file {path}", says)
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('["input", "outputs"]', "is a JSON list, not an object"),
        ('"just a string"', "is a JSON str, not an object"),
        ('{"input": null, "outputs": ["1"]}', "'input' is null; give it as a string"),
        ('{"input": "a\\nq?", "outputs": null}', "'outputs' is null; give a list of answer strings"),
        ('{"input": "a\\nq?", "outputs": []}', "'outputs' is []"),
        ('{"input": "a\\nq?", "outputs": ["1"], "length": "abc"}', "'length' is \"abc\"; give a whole number"),
    ],
)
def test_study_task_file_bad_rows(tmp_path, capsys, no_model_loads, line, says):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"input": "ok\\nq?", "outputs": ["1"]}\n' + line + "\n", encoding="utf-8")
    err = _refused(capsys, _study(tmp_path, "--tasks", str(path)), says)
    assert "rows.jsonl" in err and ("row 2" in err or "rows.jsonl:2" in err)
    assert not (tmp_path / "r.db").exists()


def test_study_task_file_row_longer_than_the_length(tmp_path, capsys):
    path = tmp_path / "long.jsonl"
    text = " ".join(f"word{i}" for i in range(400))
    path.write_text(json.dumps({"input": text + "\nWhat?", "outputs": ["x"]}) + "\n", encoding="utf-8")
    _refused(capsys, _study(tmp_path, "--tasks", str(path), "--methods", "dense"), "row 1 of", "--truncate middle")
    assert not (tmp_path / "r.db").exists()
    argv = _study(tmp_path, "--tasks", str(path), "--methods", "dense", "--truncate", "middle", "--no-report")
    assert main(argv) == 0
    import sqlite3

    with sqlite3.connect(tmp_path / "r.db") as conn:
        ((tokens,),) = conn.execute("SELECT context_tokens FROM results").fetchall()
    assert 200 < tokens <= 256 + 40  # the measured prompt (context cut to 256 tokens, plus the chat template)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_study_device_cuda_without_cuda(tmp_path, capsys, no_model_loads):
    _refused(capsys, _study(tmp_path, "--device", "cuda"), "--device cuda", "no CUDA GPU", "--device cpu")
    assert not (tmp_path / "r.db").exists()


def test_study_lengths_beyond_positions_refused_from_the_config(tmp_path, capsys, no_model_loads):
    _refused(capsys, _study(tmp_path, "--lengths", "256,9000"), "--lengths 9000", "8192", "at most 8192")


def test_study_database_in_read_only_folder_or_read_only_file(tmp_path, capsys, no_model_loads, monkeypatch):
    real = os.access
    folder = tmp_path / "ro"
    folder.mkdir()
    monkeypatch.setattr(store_module.os, "access", lambda p, m: str(p) != str(folder) and real(p, m))
    argv = ["study", "--model", TINY, *GRID, "--db", str(folder / "r.db")]
    _refused(capsys, argv, f"The folder {folder} is read-only", "writable folder")
    assert not (folder / "r.db").exists()
    db = tmp_path / "r.db"
    store_module.StudyStore.open(db).close()
    before = db.read_bytes()
    monkeypatch.setattr(store_module.os, "access", lambda p, m: str(p) != str(db) and real(p, m))
    _refused(capsys, _study(tmp_path), f"{db} is read-only", "chmod u+rw")
    assert db.read_bytes() == before
    _refused(capsys, ["study", "--model", TINY, *GRID, "--db", str(tmp_path)], "is a directory", "--db a file name")


@pytest.mark.parametrize(
    ("method", "says"),
    [
        ("oracle_topp:p=nan", "oracle_topp:p=nan is not a finite number"),
        ("oracle_topk:granularity=heads", "granularity must be one of"),
    ],
)
def test_study_bad_selector_spec_before_loading(tmp_path, capsys, no_model_loads, method, says):
    _refused(capsys, _study(tmp_path, "--methods", f"dense;{method}"), says)
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize("kind", ["binary", "latin", "folder", "missing"])
def test_generate_context_file_unreadable(capsys, no_model_loads, bad_files, kind):
    path, says = bad_files[kind]
    _refused(capsys, ["generate", "--model", TINY, "--context", f"@{path}"], f"--context @file {path}", says)


def test_generate_context_longer_than_positions(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(
        models.RANDOM_SHAPES,
        "tiny-llama",
        models.RANDOM_SHAPES["tiny-llama"].__class__("llama", 64, 2, 4, 2, 16, 128, None, 256),
    )
    context = " ".join(f"word{i}" for i in range(400))
    base = ["generate", "--model", TINY, "--context", context, "--question", "What?", "--max-new-tokens", "2"]
    _refused(capsys, base, "--context with --question has", "--truncate middle")
    assert main([*base, "--truncate", "left"]) == 0
    assert "--truncate left dropped" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_generate_device_cuda_without_cuda(capsys, no_model_loads):
    _refused(capsys, ["generate", "--model", TINY, "--context", "x", "--device", "cuda:0"], "no CUDA GPU")


@pytest.mark.parametrize("kind", ["binary", "latin", "folder", "missing"])
def test_replay_transcript_unreadable(tmp_path, capsys, no_model_loads, bad_files, kind):
    path, says = bad_files[kind]
    out = tmp_path / "turns.json"
    _refused(capsys, ["replay", str(path), "--model", TINY, "--json", str(out)], f"transcript {path}", says)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["binary", "latin", "folder", "missing"])
def test_calibrate_text_unreadable(tmp_path, capsys, no_model_loads, bad_files, kind):
    path, says = bad_files[kind]
    out = tmp_path / "cal.json"
    _refused(capsys, ["calibrate", "--model", TINY, "--text", str(path), "--out", str(out)], f"--text {path}", says)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["binary", "folder", "missing"])
def test_report_database_unreadable(tmp_path, capsys, bad_files, kind):
    path, _ = bad_files[kind]
    out = tmp_path / "rep"
    _refused(capsys, ["report", str(path), "--out", str(out)], str(path))
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "says"),
    [(["--d", "0"], "--d (head dimension) must be a positive"), (["--d", "-4"], "got -4"), (["--n", "1"], "--n")],
)
def test_theorem_bad_sizes(capsys, extra, says):
    _refused(capsys, ["theorem", *extra], says)


@pytest.mark.parametrize("verb", ["replay", "calibrate"])
def test_output_path_that_is_a_directory(tmp_path, capsys, no_model_loads, verb):
    transcript = tmp_path / "t.json"
    transcript.write_text('[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]')
    argv = {
        "replay": ["replay", str(transcript), "--model", TINY, "--json", str(tmp_path)],
        "calibrate": ["calibrate", "--model", TINY, "--out", str(tmp_path)],
    }[verb]
    _refused(capsys, argv, f"{tmp_path} is a directory; give a file name")

"""Trajectory replay: rendering fallbacks, assistant token spans, and the position alignment of per-turn scores."""

import json

import pytest
import torch

import ctxsparse.generation as generation
from ctxsparse import Budget
from ctxsparse.models import load_model
from ctxsparse.study.replay import (
    as_text_messages,
    check_messages,
    choose_rendering,
    load_transcript,
    replay,
    scored_rows,
    token_spans,
)

CALL = {"id": "c1", "type": "function", "function": {"name": "lookup_order", "arguments": '{"id": 7}'}}
MESSAGES = [
    {"role": "user", "content": "Where is my order number 7?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "shipped yesterday"},
    {"role": "assistant", "content": [{"type": "text", "text": "It shipped yesterday."}]},
]


@pytest.fixture(scope="module")
def tiny():
    return load_model("random:tiny-llama")


def test_scored_rows_alignment():
    # Tokens [10, 14) are predicted at positions 9..12; with sparse_from 10, position 9 is dense.
    assert scored_rows(10, 10, 14, 20) == [0, 1, 2]
    assert scored_rows(10, 15, 18, 20) == [4, 5, 6]
    assert scored_rows(10, 15, 18, 5) == [4]


def test_tool_calls_rendered_as_text(tiny):
    _, tokenizer = tiny
    rendering, msgs = choose_rendering(tokenizer, MESSAGES)
    # The local ChatML template drops tool_calls silently, so the text rendering is chosen.
    assert rendering == "tool calls as text"
    assert '"name": "lookup_order"' in msgs[1]["content"] and msgs[3]["content"] == "It shipped yesterday."
    as_user = as_text_messages(MESSAGES, tool_role=False)
    assert as_user[2]["role"] == "user" and as_user[2]["content"].startswith("[tool result c1]")


def test_token_spans_cover_each_assistant_turn(tiny):
    _, tokenizer = tiny
    _, msgs = choose_rendering(tokenizer, MESSAGES)
    ids, spans = token_spans(tokenizer, msgs)
    whole = tokenizer(tokenizer.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
    assert ids == whole
    assert [m for m, _, _ in spans] == [1, 3]
    second = tokenizer.decode(ids[spans[1][1] : spans[1][2]])
    assert second.startswith("It shipped yesterday.") and "user" not in second
    assert spans[0][2] <= spans[1][1]


def test_replay_aggregates_the_right_positions(tiny, monkeypatch):
    model, tokenizer = tiny
    seen = {}

    def fake_teacher_forced(model, input_ids, sparse_from, selector, budget):
        seen["sparse_from"], seen["T"] = sparse_from, input_ids.shape[1]
        positions = torch.arange(sparse_from, input_ids.shape[1], dtype=torch.float32)
        return generation.TeacherForced(positions, positions.long() % 2 == 0, None)

    monkeypatch.setattr(generation, "teacher_forced", fake_teacher_forced)
    result = replay(model, tokenizer, MESSAGES, "oracle_topk", Budget(sparsity=4))
    first, second = result.turns
    assert seen["sparse_from"] == first.start == result.sparse_from and seen["T"] == result.tokens
    # KL here equals the predicting position p, so a turn's mean is the mean of its positions.
    assert first.scored == first.end - first.start - 1
    assert first.kl_mean == pytest.approx((first.start + first.end - 2) / 2)
    assert second.scored == second.end - second.start
    assert second.kl_mean == pytest.approx((second.start - 1 + second.end - 2) / 2)
    assert second.kl_max == second.end - 2


def test_bad_transcripts(tmp_path):
    with pytest.raises(ValueError, match="no assistant"):
        check_messages([{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="starts with an assistant"):
        check_messages([{"role": "assistant", "content": "hi"}])
    with pytest.raises(ValueError, match="role"):
        check_messages([{"content": "hi"}])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_transcript(bad)
    wrapped = tmp_path / "ok.json"
    wrapped.write_text(json.dumps({"messages": MESSAGES}))
    assert load_transcript(wrapped) == MESSAGES

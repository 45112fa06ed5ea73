import pytest
import torch

from ctxsparse.agent.kv_conversation import KVConversation, common_prefix
from ctxsparse.budget import Budget
from ctxsparse.models import load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model("random:tiny-llama", seed=3)


def conversation_turns():
    msgs = [
        {"role": "system", "content": "You are a helpful assistant that runs bash commands."},
        {"role": "user", "content": "Please fix the issue in the file main.py where the answer is 42."},
    ]
    yield list(msgs)
    msgs += [
        {"role": "assistant", "content": "Let me look at the files. ls -la"},
        {"role": "user", "content": "<returncode>0</returncode> main.py tests error code E1234"},
    ]
    yield list(msgs)
    msgs += [
        {"role": "assistant", "content": "cat main.py"},
        {"role": "user", "content": "VAR ABCDE = 12345 ; result = handler(request)"},
    ]
    yield list(msgs)


def count_forward_tokens(model, seen, counting):
    def hook(module, args, kwargs):
        if counting[0]:
            seen.append(kwargs["input_ids"].shape[1])

    return model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize(
    "method,sparsity,phase", [("oracle_topk", 4, "question"), ("dense", 1, "question"), ("oracle_topk", 4, "decode")]
)
def test_prefills_only_new_tokens_and_matches_from_scratch(tiny, method, sparsity, phase):
    model, tok = tiny
    conv = KVConversation(model, tok, method, Budget(sparsity=sparsity), phase=phase, trace=True)
    seen, counting = [], [True]
    handle = count_forward_tokens(model, seen, counting)
    previous = 0
    try:
        for turn, msgs in enumerate(conversation_turns()):
            seen.clear()
            counting[0] = True
            out = conv.reply(msgs, max_new_tokens=6)
            prompt = conv.render(msgs, generation_prompt=True)
            new = len(prompt) - previous
            assert not out.reprefill
            # Only tokens extending the cache run: dense history + question once densely (plus a sparse question
            # pass and the reply when sparse), never the earlier turns again.
            assert out.prefilled_tokens == new
            sparse_q = method != "dense" and phase == "question"
            traced = method != "dense"
            expected = new + out.question_tokens + (len(out.token_ids) - 1) * (1 + traced)
            assert sum(seen) == expected
            assert conv.cache.get_seq_length() == len(prompt)
            assert (out.question_tokens > 0) == sparse_q
            previous = len(prompt)
            # A fresh conversation prefilled from scratch gives the same reply.
            fresh = KVConversation(model, tok, method, Budget(sparsity=sparsity), phase=phase, trace=False)
            counting[0] = False
            scratch = fresh.reply(msgs, max_new_tokens=6)
            assert scratch.token_ids == out.token_ids
            if turn and method != "dense":
                assert out.trace.summary()["top1_agreement"] is not None
    finally:
        handle.remove()


def test_cache_is_dense_after_each_turn(tiny):
    model, tok = tiny
    conv = KVConversation(model, tok, "oracle_topk", Budget(sparsity=4), trace=False)
    msgs = list(conversation_turns())[1]
    conv.reply(msgs, max_new_tokens=4)
    prompt = conv.render(msgs, generation_prompt=True)
    ref = model(input_ids=torch.tensor([prompt]), use_cache=True).past_key_values
    for layer in range(len(ref.layers)):
        torch.testing.assert_close(conv.cache.layers[layer].keys, ref.layers[layer].keys, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(conv.cache.layers[layer].values, ref.layers[layer].values, atol=1e-4, rtol=1e-4)


def test_mismatch_is_counted_and_cut_back(tiny):
    model, tok = tiny
    conv = KVConversation(model, tok, "oracle_topk", Budget(sparsity=4), trace=False)
    first, second, _ = conversation_turns()
    conv.reply(second, max_new_tokens=3)
    edited = [dict(m) for m in second]
    edited[-1]["content"] = "something else entirely"
    out = conv.reply(edited, max_new_tokens=3)
    assert out.reprefill and conv.reprefills == 1
    prompt = conv.render(edited, generation_prompt=True)
    assert out.prefilled_tokens < len(prompt)
    assert conv.cache.get_seq_length() == len(prompt)


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2, 3]) == 2

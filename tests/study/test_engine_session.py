"""The study's engine path: the same rows as one sample at a time, each sample prefilled once, verdict stops."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ctxsparse import Budget
from ctxsparse.generation import decode, prefill
from ctxsparse.gpu_index.launch import INTERPRETED
from ctxsparse.models import load_model
from ctxsparse.study.backend import TransformersBackend, TransformersSession
from ctxsparse.study.engine_session import EngineSession
from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.runner import StudyRunner
from ctxsparse.study.store import StudyStore
from ctxsparse.tasks import get_task

TINY = "random:tiny-llama"
VOLATILE = {"run_id", "created", "prefill_s", "decode_s"}
CAPS = [5, 3, 6, 4]


@pytest.fixture(scope="module")
def tiny():
    return load_model(TINY, dtype="float32")


def _samples(tokenizer):
    # Ragged contexts and questions: two lengths, two families.
    return get_task("niah_single").generate(tokenizer, 224, 2) + get_task("vt").generate(tokenizer, 160, 2)


def _configs(methods, phase="question"):
    plan = StudyPlan.build([TINY], methods, [10], ["niah_single"], [224], samples=1, phase=phase)
    return {c.method.spec: c for c in plan.configs(TINY)}


class Capped:
    """A sample with its own max_new_tokens (the study's cap per sample)."""

    def __init__(self, sample, cap):
        self.sample, self.max_new_tokens = sample, cap

    def __getattr__(self, name):
        return getattr(self.sample, name)


@pytest.mark.parametrize("phase", ["question", "decode"])
def test_engine_rows_equal_one_at_a_time(tiny, phase):
    """Dense, a batched-select method and one the engine hands to the transformers path: tokens, text and the
    teacher-forced fidelity (KL, top-1 agreement over the same positions) of generation.decode, per sample."""
    model, tokenizer = tiny
    samples = [Capped(s, c) for s, c in zip(_samples(tokenizer), CAPS, strict=True)]
    session = EngineSession(model, tokenizer, phase=phase)
    pres = [session.prefill(s) for s in samples]
    assert len({p.context_tokens for p in pres}) > 1
    configs = _configs(["dense", "oracle_topk", "sink_window:sink=4,window=16", "quest"], phase)
    for spec, config in configs.items():
        got = dict(session.decode_many(pres, samples, config))
        assert sorted(got) == [0, 1, 2, 3]
        if spec == "quest":  # no batched select for Quest's incremental state: the transformers path's rows
            hf = TransformersSession(model, tokenizer)
            want = dict(hf.decode_many([hf.prefill(s) for s in samples], samples, config))
            assert [got[j].text for j in range(4)] == [want[j].text for j in range(4)]
            continue
        for j, s in enumerate(samples):
            alone = decode(
                prefill(model, tokenizer, s.context, chat=s.chat),
                s.question,
                spec,
                Budget(sparsity=1 if spec == "dense" else 10),
                max_new_tokens=CAPS[j],
                phase=phase,
                answer_prefix=s.answer_prefix,
            )
            assert got[j].text == alone.text and got[j].new_tokens == len(alone.token_ids), (spec, j)
            if spec == "dense":
                continue
            summary = alone.trace.summary()
            assert got[j].steps == summary["steps"]
            for key in ("kl", "top1_agreement"):
                assert got[j].fidelity[key] == pytest.approx(summary[key], rel=1e-3, abs=1e-5), (spec, key)
            assert got[j].fidelity["mass_recall"] is None  # the engine's kernels form no attention weights
    # Every sample's context went into the engine's cache once; quest's transformers path prefilled its own.
    assert session.prefills == 2 * len(samples)
    assert all(p.prefill_s > 0 for p in pres)


def test_a_subset_of_the_batch_reuses_its_rows(tiny):
    """A configuration over some of the resident samples reorders rows instead of prefilling again."""
    model, tokenizer = tiny
    samples = [Capped(s, 4) for s in _samples(tokenizer)]
    session = EngineSession(model, tokenizer)
    pres = [session.prefill(s) for s in samples]
    config = _configs(["oracle_topk"])["oracle_topk"]
    whole = dict(session.decode_many(pres, samples, config))
    part = dict(session.decode_many([pres[3], pres[1]], [samples[3], samples[1]], config))
    assert session.prefills == len(samples)
    assert part[0].text == whole[3].text and part[1].text == whole[1].text
    again = dict(session.decode_many(pres, samples, config))
    assert [again[j].text for j in range(4)] == [whole[j].text for j in range(4)]
    assert session.prefills == len(samples)


def test_stop_when_cuts_the_answer_where_the_verdict_was_fixed(tiny):
    model, tokenizer = tiny
    samples = [Capped(s, 12) for s in _samples(tokenizer)[:2]]
    session = EngineSession(model, tokenizer)
    pres = [session.prefill(s) for s in samples]
    config = _configs(["dense"])["dense"]
    free = dict(session.decode_many(pres, samples, config))
    seen = []

    def long_enough(text):
        seen.append(text)
        return len(text) >= 5

    cut = dict(session.decode_many(pres, samples, config, [long_enough, None]))
    assert cut[1].text == free[1].text
    if len(free[0].text) >= 5:
        # The answer stops at the first token that fixed the verdict, whatever the host's check interval.
        assert seen[-1] == cut[0].text and len(cut[0].text) >= 5
        assert all(len(text) < 5 for text in seen[:-1])
        assert free[0].text.startswith(cut[0].text) and cut[0].new_tokens < free[0].new_tokens


def _study_rows(tmp_path, name, decode_path):
    plan = StudyPlan.build(
        [TINY],
        ["dense", "oracle_topk", "sink_window:sink=4,window=16", "vattention"],
        [10],
        ["niah_single", "vt"],
        [192],
        samples=3,
        max_new_tokens=4,
    )
    backend = TransformersBackend("cpu", "float32", decode_path=decode_path)
    runner = StudyRunner(plan, backend, progress=False, batch_size=3)
    runner.check_names()
    runner.open_models()
    with StudyStore.open(tmp_path / f"{name}.db") as store:
        out = runner.run(store)
        rows = store.rows()
    assert out.written == plan.size() and out.prefills == 2 * 3
    return {(r["config_hash"], r["task"], r["length"], r["sample"]): r for r in rows}


def test_study_through_the_engine_writes_the_transformers_rows(tmp_path):
    """Scores, predictions and token counts match the batched transformers path; vAttention samples its
    residual per call, so its rows are only checked for being there."""
    engine, plain = _study_rows(tmp_path, "engine", "engine"), _study_rows(tmp_path, "hf", "transformers")
    assert engine.keys() == plain.keys()
    for key, row in engine.items():
        if row["method"] == "vattention":
            assert row["prediction"] is not None
            continue
        same = ("score", "prediction", "new_tokens", "context_tokens", "sample_hash")
        assert {k: row[k] for k in same} == {k: plain[key][k] for k in same}, row["method"]


def test_auto_picks_transformers_on_cpu_and_refuses_unknown_paths(tiny):
    assert isinstance(TransformersBackend("cpu", "float32").open(TINY), TransformersSession)
    assert isinstance(TransformersBackend("cpu", "float32", decode_path="engine").open(TINY), EngineSession)
    with pytest.raises(ValueError, match="decode_path must be one of auto, engine, transformers"):
        TransformersBackend("cpu", "float32", decode_path="fast")


@pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter test")
def test_forced_feed_through_the_batched_step_equals_the_reference_path():
    """The batched (kernel) step with question tokens fed one per step gives the reference path's answers."""
    from ctxsparse.engine import Engine
    from ctxsparse.engine.forced import run_forced
    from ctxsparse.engine.grad_mode import engine_mode
    from ctxsparse.engine.hook import attached
    from ctxsparse.selectors import OracleTopK

    cfg = AutoConfig.for_model("llama", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=64, intermediate_size=256, vocab_size=512,
                               max_position_embeddings=1024)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).eval()
    gen = torch.Generator().manual_seed(1)
    contexts = [torch.randint(5, 500, (n,), generator=gen).tolist() for n in (23, 14)]
    questions = [torch.randint(5, 500, (n,), generator=gen).tolist() for n in (3, 5)]
    selector = OracleTopK(granularity="kv_head", aggregate="logit_max")
    answers = {}
    for graphs in (False, "auto"):  # on a CPU: the kernels (interpreted), then the reference path
        with Engine(model, None, selector=selector, budget=Budget(tokens=40), max_batch=2, max_len=48,
                    graphs=graphs) as engine:  # fmt: skip
            with engine_mode(), attached(model, engine._dispatch):
                for b, ctx in enumerate(contexts):
                    engine._forward_rows([b], [0], [ctx], sparse=False)
            run = run_forced(engine, [23, 14], questions, [4, 2])
            answers[run.mode] = [r.tokens for r in run.rows]
    ref = "rows (batched select, fixed shapes)"  # the feeds as one block, then fixed-shape steps
    assert set(answers) == {"eager", ref}
    assert answers["eager"] == answers[ref]
    assert [len(a) for a in answers["eager"]] == [4, 2]


def test_forced_run_refuses_bad_rows(tiny):
    from ctxsparse.engine import Engine
    from ctxsparse.engine.forced import run_forced

    model, tokenizer = tiny
    with Engine(model, tokenizer, max_batch=2, max_len=32) as engine:
        with pytest.raises(ValueError, match="has no input to feed"):
            run_forced(engine, [4, 4], [[1], []], [2, 2])
        with pytest.raises(ValueError, match="needs 36 cache slots"):
            run_forced(engine, [30, 4], [[1, 2], [1]], [4, 2])
        with pytest.raises(ValueError, match="max_batch=2"):
            run_forced(engine, [4, 4, 4], [[1]] * 3, [1] * 3)


def test_auto_takes_the_engine_only_where_it_serves_the_model(tiny):
    from ctxsparse.study.backend import engine_problem

    model, _ = tiny
    assert "not on a CUDA device" in engine_problem(model)
    cfg = AutoConfig.for_model("llama", hidden_size=128, num_hidden_layers=1, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=64, intermediate_size=256, vocab_size=512)  # fmt: skip
    cfg.sliding_window = 256
    assert "sliding window" in engine_problem(AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16))
    gemma, _ = load_model("random:tiny-gemma", dtype="float32")
    assert "not 'gemma'" in engine_problem(gemma)

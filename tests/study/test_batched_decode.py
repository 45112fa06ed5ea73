"""Batched decoding: the same rows as one sample at a time, padding never selected, early verdict stop."""

import pytest

from ctxsparse import Budget
from ctxsparse.generation import decode, prefill
from ctxsparse.models import load_model
from ctxsparse.selectors import OracleTopK
from ctxsparse.study.backend import TransformersBackend
from ctxsparse.study.batched_decode import decode_batch, prefill_context
from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.runner import StudyRunner
from ctxsparse.study.store import StudyStore
from ctxsparse.tasks import get_task

TINY = "random:tiny-llama"
VOLATILE = {"run_id", "created", "prefill_s", "decode_s"}


@pytest.fixture(scope="module")
def tiny():
    return load_model(TINY, dtype="float32")


def _samples(tokenizer):
    # Ragged contexts and questions: two lengths, two families.
    return get_task("niah_single").generate(tokenizer, 224, 2) + get_task("vt").generate(tokenizer, 160, 2)


class PaddingWatch(OracleTopK):
    """Oracle top-k that counts selected positions the mask marks invisible (padding, the future)."""

    invisible_picks = 0
    calls = 0

    def select(self, ctx, k, exclude=None):
        sel = super().select(ctx, k, exclude)
        picked = sel.as_mask(ctx.num_keys)
        PaddingWatch.invisible_picks += int((picked & ~ctx.visible_for(self.granularity)).sum())
        PaddingWatch.calls += 1
        return sel


def test_batch_matches_one_at_a_time_and_never_reads_padding(tiny):
    model, tokenizer = tiny
    samples = _samples(tokenizer)
    pres = [prefill_context(model, tokenizer, s.context, chat=s.chat) for s in samples]
    got = dict(
        decode_batch(
            pres,
            [s.question for s in samples],
            PaddingWatch(),
            Budget(sparsity=10),
            [5, 3, 5, 4],
            answer_prefixes=[s.answer_prefix for s in samples],
        )
    )
    assert PaddingWatch.calls > 0 and PaddingWatch.invisible_picks == 0
    assert len({p.num_tokens for p in pres}) > 1
    for j, s in enumerate(samples):
        alone = decode(
            prefill(model, tokenizer, s.context, chat=s.chat),
            s.question,
            "oracle_topk",
            Budget(sparsity=10),
            max_new_tokens=[5, 3, 5, 4][j],
            answer_prefix=s.answer_prefix,
        )
        summary = alone.trace.summary()
        assert got[j].token_ids == alone.token_ids and got[j].text == alone.text
        assert got[j].steps == summary["steps"]
        for key in ("density", "mass_recall", "output_error", "kl", "top1_agreement"):
            assert got[j].fidelity[key] == pytest.approx(summary[key], rel=1e-4, abs=1e-6)


def test_stop_when_ends_a_row_early(tiny):
    model, tokenizer = tiny
    samples = _samples(tokenizer)[:2]
    pres = [prefill_context(model, tokenizer, s.context, chat=s.chat) for s in samples]
    rows = list(
        decode_batch(
            pres,
            [s.question for s in samples],
            "dense",
            Budget(sparsity=1),
            [6, 6],
            trace=False,
            stop_when=[lambda text: True, None],
        )
    )
    assert [j for j, _ in rows] == [0, 1]
    assert len(rows[0][1].token_ids) == 1 and len(rows[1][1].token_ids) == 6


def _study_rows(tmp_path, name, batch_size):
    plan = StudyPlan.build(
        [TINY],
        ["dense", "oracle_topk", "sink_window:sink=4,window=16"],
        [10],
        ["niah_single", "vt"],
        [192],
        samples=3,
        max_new_tokens=4,
    )
    runner = StudyRunner(plan, TransformersBackend("cpu", "float32"), progress=False, batch_size=batch_size)
    runner.check_names()
    runner.open_models()
    with StudyStore.open(tmp_path / f"{name}.db") as store:
        out = runner.run(store)
        rows = store.rows()
    assert out.written == plan.size() and out.prefills == 2 * 3
    return {(r["config_hash"], r["task"], r["length"], r["sample"]): r for r in rows}


FLOATS = ("density", "mass_recall", "output_error", "kl", "top1_agreement")


def test_batched_study_rows_equal_one_at_a_time(tmp_path):
    batched, single = _study_rows(tmp_path, "batched", 3), _study_rows(tmp_path, "single", 1)
    assert batched.keys() == single.keys()
    for key, row in batched.items():
        alone = single[key]
        exact = {k for k in row if k not in VOLATILE and k not in FLOATS}
        assert {k: row[k] for k in exact} == {k: alone[k] for k in exact}
        # Fidelity means differ only by float summation order between a batch and a single row.
        for k in FLOATS:
            assert row[k] == pytest.approx(alone[k], rel=1e-4, abs=1e-6)

"""The study grid: method spec parsing, dense handling, sample limits, config hashes."""

import pytest

from ctxsparse.study.plan import DENSE_PHASE, MethodSpec, StudyPlan, parse_numbers, split_methods


def test_split_methods_commas_semicolons_and_repeats_agree():
    expected = ["dense", "oracle_topk", "sink_window:sink=4,window=64"]
    assert split_methods(["dense,oracle_topk,sink_window:sink=4,window=64"]) == expected
    assert split_methods(["dense;oracle_topk;sink_window:sink=4,window=64"]) == expected
    assert split_methods(["dense", "oracle_topk", "sink_window:sink=4,window=64"]) == expected
    assert split_methods(["sink_window:window=64,sink=4,oracle_topk"]) == [
        "sink_window:window=64,sink=4",
        "oracle_topk",
    ]


def test_split_methods_rejects_orphan_parameter():
    with pytest.raises(ValueError, match="follows no"):
        split_methods(["window=64,dense"])


def test_method_spec_is_canonical():
    a = MethodSpec.parse(" sink_window:window=64, sink=4 ")
    b = MethodSpec.parse("sink_window:sink=4,window=64")
    assert a == b and a.spec == "sink_window:sink=4,window=64"
    assert a.params == {"sink": 4, "window": 64}
    assert MethodSpec.parse("oracle_topk:aggregate=logit_max").spec == "oracle_topk:aggregate=logit_max"
    assert MethodSpec.parse("sink_window:sink=4+oracle_topk").name == "sink_window+oracle_topk"


def test_grid_dense_once_sparse_above_one():
    plan = StudyPlan.build(
        ["m"], ["oracle_topk", "sink_window:sink=4"], [1, 10, 50], ["t1", "t2"], [128, 256], samples=3
    )
    configs = plan.configs("m")
    labels = [c.label() for c in configs]
    assert labels == [
        "dense",
        "oracle_topk @ 10x",
        "oracle_topk @ 50x",
        "sink_window:sink=4 @ 10x",
        "sink_window:sink=4 @ 50x",
    ]
    assert configs[0].sparsity == 1 and configs[0].phase == DENSE_PHASE
    assert len({c.hash for c in configs}) == len(configs)
    assert plan.size() == 5 * 2 * 2 * 3


def test_dense_phase_does_not_change_its_hash_but_sparse_phase_does():
    q = StudyPlan.build(["m"], ["oracle_topk"], [10], ["t"], [128], phase="question").configs("m")
    d = StudyPlan.build(["m"], ["oracle_topk"], [10], ["t"], [128], phase="decode").configs("m")
    assert q[0].hash == d[0].hash
    assert q[1].hash != d[1].hash


def test_new_token_cap_is_part_of_the_configuration():
    plain = StudyPlan.build(["m"], ["oracle_topk"], [10], ["t"], [128]).configs("m")
    capped = StudyPlan.build(["m"], ["oracle_topk"], [10], ["t"], [128], max_new_tokens=4).configs("m")
    assert plain[1].hash != capped[1].hash

    class Sample:
        max_new_tokens = 32

    assert capped[1].new_tokens_for(Sample()) == 4 and plain[1].new_tokens_for(Sample()) == 32


def test_limit_counts_and_fractions():
    base = dict(models=["m"], methods=["dense"], sparsities=[1], tasks=["t"], lengths=[64])
    assert StudyPlan.build(**base, samples=10).samples_to_run == 10
    assert StudyPlan.build(**base, samples=10, limit=3).samples_to_run == 3
    assert StudyPlan.build(**base, samples=10, limit=0.25).samples_to_run == 3
    assert StudyPlan.build(**base, samples=2, limit=5).samples_to_run == 2


def test_plan_rejects_bad_values():
    with pytest.raises(ValueError, match="sparsity level > 1"):
        StudyPlan.build(["m"], ["oracle_topk"], [1], ["t"], [64])
    with pytest.raises(ValueError, match="phase"):
        StudyPlan.build(["m"], ["dense"], [1], ["t"], [64], phase="prefill")
    with pytest.raises(ValueError, match=">= 1"):
        StudyPlan.build(["m"], ["dense"], [0.5], ["t"], [64])
    with pytest.raises(ValueError, match="numbers"):
        parse_numbers("1,x")
    assert parse_numbers("2048, 4096", int) == [2048, 4096]

"""Work units: the pending grid cut into (model, task, length, sample range) pieces, done rows left out."""

from ctxsparse.study.executors.units import make_units, task_label
from ctxsparse.study.plan import StudyPlan


def _plan():
    return StudyPlan.build(["m"], ["dense", "oracle_topk"], [10, 50], ["alpha", "data/qa_set.jsonl"], [64], samples=5)


def test_units_cover_the_grid_once_in_ranges():
    plan = _plan()
    units = make_units(plan, ["m"], set(), samples_per_unit=2)
    assert [(u.task, u.start, u.stop) for u in units] == [
        ("alpha", 0, 2),
        ("alpha", 2, 4),
        ("alpha", 4, 5),
        ("data/qa_set.jsonl", 0, 2),
        ("data/qa_set.jsonl", 2, 4),
        ("data/qa_set.jsonl", 4, 5),
    ]
    assert sum(u.rows for u in units) == plan.size() == 2 * 5 * 3


def test_done_rows_are_left_out_and_files_stored_by_stem():
    plan = _plan()
    configs = plan.configs("m")
    done = {(c.hash, "alpha", 64, i, 0) for c in configs for i in range(3)}  # alpha 0..2 complete
    done.add((configs[1].hash, "qa_set", 64, 0, 0))  # one row of the file task, under its stem
    units = make_units(plan, ["m"], done, samples_per_unit=5)
    alpha, qa = units
    assert [i for i, _ in alpha.todo] == [3, 4]
    assert len(qa.todo[0][1]) == 2 and qa.rows == 5 * 3 - 1
    assert task_label("data/qa_set.jsonl") == "qa_set" and task_label("niah_single") == "niah_single"

"""Stale rows: a changed generator is noticed on resume, left out of the report with a count, or rerun."""

from study_fakes import FakeBackend, FakeSample, FakeTask

from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.report import write_report
from ctxsparse.study.runner import StudyRunner
from ctxsparse.study.sample_check import check_samples, describe
from ctxsparse.study.store import StudyStore


class EditedTask(FakeTask):
    """FakeTask whose sample 1 text depends on `version` (a generator that changed between releases)."""

    version = 1

    def generate(self, tokenizer, length, count, seed=0):
        out = super().generate(tokenizer, length, count, seed)
        if count > 1:
            s = out[1]
            out[1] = FakeSample(s.task, 1, f"{s.context} v{self.version}", s.question, s.answers)
        return out


def _run(path, task, rerun=False):
    plan = StudyPlan.build(["fake-a"], ["dense", "oracle_topk"], [10], ["alpha"], [128], samples=3)
    runner = StudyRunner(plan, FakeBackend(), get_task=lambda name: task, progress=False)
    runner.check_names()
    runner.open_models()
    with StudyStore.open(path) as store:
        check = check_samples(store, plan, runner.tasks, lambda m: runner.session(m).tokenizer, rerun)
        outcome = runner.run(store)
    return check, outcome


def test_changed_generator_is_reported_excluded_and_rerun_on_request(tmp_path):
    path = tmp_path / "r.db"
    task = EditedTask("alpha")
    check, outcome = _run(path, task)
    assert check.stale == 0 and outcome.written == 6

    task.version = 2
    check, outcome = _run(path, task)
    assert check.stale == 2 and check.deleted == 0 and outcome.written == 0
    assert "2 rows (1 samples)" in describe(check, path) and "--rerun-stale" in describe(check, path)
    report = write_report(path, tmp_path / "rep")
    cells = {c.method: c for c in report.cells}
    assert cells["dense"].n == 2 and cells["oracle_topk"].pairs == 2
    assert "stale rows left out**: 2" in report.markdown.read_text()

    check, outcome = _run(path, task, rerun=True)
    assert check.deleted == 2 and outcome.written == 2
    with StudyStore.open(path) as store:
        hashes = {(r["sample"], r["method"]): r["sample_hash"] for r in store.rows()}
    assert hashes[(1, "dense")] == hashes[(1, "oracle_topk")]
    assert write_report(path, tmp_path / "rep2").cells[1].pairs == 3

import re
import shutil

import pytest
from reference_fixes import FIXES

from ctxsparse.agent.coding_task import check_task_folder, load_tasks, shipped_task_names
from ctxsparse.agent.sandbox import Limits, run_command
from ctxsparse.agent.workspace import Workspace, score_patch


def apply_fix(repo, fix):
    for rel, old, new in fix:
        path = repo / rel
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{rel}: reference fix text not found once"
        path.write_text(text.replace(old, new), encoding="utf-8")


def combined(tmp_path, fixed: bool):
    """Every task's repo, visible and hidden tests in one folder (module names are unique across tasks), so
    one pytest run checks them all; returns the failing test files."""
    root = tmp_path / ("fixed" if fixed else "buggy")
    for task in load_tasks("all"):
        shutil.copytree(task.repo, root, dirs_exist_ok=True)
        shutil.copytree(task.hidden_tests, root / "tests", dirs_exist_ok=True)
        if fixed:
            apply_fix(root, FIXES[task.name])
    result = run_command(
        "python -m pytest -q -p no:cacheprovider -rf tests", root, Limits(wall_s=120, cpu_s=120, output_bytes=1 << 20)
    )
    summary = result.output.strip().splitlines()[-1]
    assert "passed" in summary and "error" not in summary, result.output
    return {m for m in re.findall(r"FAILED tests/(test_\w+\.py)", result.output)}, result


def test_at_least_twelve_tasks_each_with_a_reference_fix():
    names = shipped_task_names()
    assert len(names) >= 12
    assert sorted(FIXES) == names
    assert all(load_tasks(n)[0].issue for n in names)


def test_buggy_repos_fail_hidden_tests_only(tmp_path):
    failing, result = combined(tmp_path, fixed=False)
    hidden = {p.name for t in load_tasks("all") for p in t.hidden_tests.glob("test_*.py")}
    assert failing == hidden, result.output


def test_reference_fixes_pass_all_tests(tmp_path):
    failing, result = combined(tmp_path, fixed=True)
    assert result.returncode == 0 and not failing, result.output


def test_reference_fix_resolves_through_the_diff_and_a_wrong_fix_does_not():
    task = load_tasks("size_units")[0]
    assert not score_patch(task, "").resolved
    with Workspace.create(task.repo) as ws:
        apply_fix(ws.repo, FIXES["size_units"])
        (ws.repo / "notes.txt").write_text("a new file travels in the diff\n")
        patch = ws.diff()
    assert "notes.txt" in patch and "sizes/units.py" in patch
    assert score_patch(task, patch).resolved
    with Workspace.create(task.repo) as ws:
        apply_fix(ws.repo, FIXES["size_units"][:1])  # only one of the two files fixed
        wrong = ws.diff()
    verdict = score_patch(task, wrong)
    assert verdict.patch_applied and not verdict.resolved


def test_cheating_conftest_does_not_resolve():
    task = load_tasks("page_count")[0]
    with Workspace.create(task.repo) as ws:
        (ws.repo / "conftest.py").write_text(
            "import pytest\n\ndef pytest_collection_modifyitems(items):\n    items.clear()\n"
        )
        patch = ws.diff()
    assert not score_patch(task, patch).resolved


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="Known tasks: all, chunked_tail"):
        load_tasks("no_such_task")


def test_folder_without_hidden_tests_refused(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "issue.md").write_text("fix it")
    with pytest.raises(ValueError, match="no hidden tests"):
        check_task_folder(tmp_path)
    with pytest.raises(ValueError, match="no hidden tests"):
        load_tasks(str(tmp_path))


def test_all_and_duplicates():
    assert [t.name for t in load_tasks("all,page_count")] == shipped_task_names()

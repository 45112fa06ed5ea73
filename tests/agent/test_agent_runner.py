import pytest

from ctxsparse.agent.coding_task import load_tasks
from ctxsparse.agent.runner import AgentCell, AgentPlan, grid


def test_grid_runs_dense_once_and_sparse_at_each_level():
    cells = grid(["dense", "oracle_topk"], [1, 10, 50])
    assert cells == [AgentCell("dense", 1.0), AgentCell("oracle_topk", 10.0), AgentCell("oracle_topk", 50.0)]
    assert grid(["oracle_topk"], [1]) == [AgentCell("oracle_topk", 1.0)]
    with pytest.raises(ValueError, match=">= 1"):
        grid(["oracle_topk"], [0.5])
    with pytest.raises(ValueError, match="No methods"):
        grid([], [10])


def test_plan_keys_are_unique_and_stable():
    tasks = load_tasks("page_count,roman_numerals")
    plan = AgentPlan("random:tiny-llama", tasks, grid(["dense", "oracle_topk"], [1, 10]), max_turns=5)
    keys = [k for k, _, _ in plan.episodes()]
    assert len(keys) == len(set(keys)) == 4
    again = AgentPlan("random:tiny-llama", tasks, grid(["dense", "oracle_topk"], [1, 10]), max_turns=5)
    assert keys == [k for k, _, _ in again.episodes()]
    other = AgentPlan("random:tiny-llama", tasks, grid(["dense", "oracle_topk"], [1, 10]), max_turns=6)
    assert not set(keys) & {k for k, _, _ in other.episodes()}  # a different turn limit is a different episode


def test_plan_refuses_bad_limits():
    tasks = load_tasks("page_count")
    with pytest.raises(ValueError, match="--max-turns"):
        AgentPlan("m", tasks, grid(["dense"], [1]), max_turns=0)
    with pytest.raises(ValueError, match="No tasks"):
        AgentPlan("m", [], grid(["dense"], [1]))

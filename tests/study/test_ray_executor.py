"""The Ray executor on a 2-CPU local Ray: the same rows as the local executor, a killed worker's unit
retried without duplicates, and refusals before any work."""

import os
import sys

import pytest

ray = pytest.importorskip("ray")

from ctxsparse.study.backend import TransformersBackend  # noqa: E402
from ctxsparse.study.executors.ray import RayExecutor, RayUnavailableError, check_reachable  # noqa: E402
from ctxsparse.study.plan import StudyPlan  # noqa: E402
from ctxsparse.study.runner import StudyRunner, default_get_task  # noqa: E402
from ctxsparse.study.store import StudyStore  # noqa: E402

TINY = "random:tiny-llama"
VOLATILE = {"run_id", "created", "prefill_s", "decode_s"}


@pytest.fixture(scope="module")
def ray_cluster():
    src = os.path.dirname(os.path.dirname(sys.modules["ctxsparse"].__file__))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": src}})
    yield ray
    ray.shutdown()


def _plan():
    return StudyPlan.build(
        [TINY],
        ["dense", "oracle_topk", "sink_window:sink=4,window=16"],
        [10],
        ["niah_single", "vt"],
        [192],
        samples=3,
        max_new_tokens=4,
    )


def _runner(plan):
    runner = StudyRunner(plan, TransformersBackend("cpu", "float32"), progress=False)
    runner.check_names()
    return runner


def _comparable(rows):
    return sorted(tuple(sorted((k, v) for k, v in r.items() if k not in VOLATILE)) for r in rows)


def _ray_executor(plan, **kw):
    return RayExecutor(plan, TransformersBackend("cpu", "float32"), default_get_task, progress=False, **kw)


def _kill_first_unit_once(marker):
    def hook(unit, sample):
        if unit.task == "vt" and sample == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)

    return hook


def test_ray_writes_the_local_rows_and_retries_a_killed_worker(tmp_path, ray_cluster):
    plan = _plan()
    runner = _runner(plan)
    runner.open_models()
    with StudyStore.open(tmp_path / "local.db") as store:
        local = runner.run(store)
        local_rows = store.rows()
    assert local.written == plan.size() == 3 * 2 * 3

    marker = tmp_path / "killed-once"
    executor = _ray_executor(plan, fault_hook=_kill_first_unit_once(str(marker)))
    assert executor.connect() == 2
    with StudyStore.open(tmp_path / "ray.db") as store:
        out = _runner(plan).run(store, executor=executor)
        ray_rows = store.rows()
    assert marker.exists() and len(executor.retried) == 1
    assert out.written == plan.size() and out.units == 2 * 3
    keys = [(r["config_hash"], r["task"], r["sample"]) for r in ray_rows]
    assert len(keys) == len(set(keys)) == plan.size()
    assert _comparable(ray_rows) == _comparable(local_rows)


def test_more_gpus_than_the_cluster_has_is_refused(ray_cluster):
    with pytest.raises(RayUnavailableError, match="more GPUs than the Ray cluster has"):
        _ray_executor(_plan(), gpus_per_worker=1).connect()


def test_unreachable_address_is_refused_fast():
    with pytest.raises(RayUnavailableError, match="No Ray cluster answers at 127.0.0.1:1"):
        check_reachable("127.0.0.1:1")
    with pytest.raises(RayUnavailableError, match="host:port"):
        check_reachable("nowhere")


def test_missing_ray_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailableError, match=r"ctxsparse\[ray\]"):
        _ray_executor(_plan()).connect()

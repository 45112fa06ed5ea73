"""The Ray executor: one actor per GPU (or CPU slot) loads its model once and runs work units; the
driver hands out units, writes every returned row (the database's only writer) and retries the unit
of an actor that died, on a fresh actor, so no unit is lost or written twice.

Ray is an optional extra (pip install 'ctxsparse[ray]'); connect() checks it, the address and the
resources before any model is loaded.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ctxsparse.study.executors.units import UnitWorker, WorkUnit, check_lengths
from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.store import ResultRow

RAY_INSTALL = "pip install 'ctxsparse[ray]'"
CONNECT_TIMEOUT_S = 3.0


class RayUnavailableError(RuntimeError):
    """Ray cannot run this study (not installed, unreachable, too few resources); the message says what to change."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise RayUnavailableError(
            f"--executor ray needs Ray, which is not installed; install it with: {RAY_INSTALL}"
        ) from err
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast on a host:port (or ray://host:port) nobody listens on, instead of Ray's long retries."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise RayUnavailableError(
            f"Ray address {address!r} is not 'auto' or host:port (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001)."
        )
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise RayUnavailableError(
            f"No Ray cluster answers at {address} ({err}); start one with `ray start --head` there, or check "
            "--ray-address."
        ) from err


class StudyActor:
    """Body of the Ray actor: one UnitWorker whose model stays loaded between units."""

    def __init__(self, plan: StudyPlan, backend: Any, get_task: Callable, options: dict[str, Any]) -> None:
        threads = options.pop("threads", None)
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.worker = UnitWorker(plan, backend, get_task, **options)

    def load(self, model: str) -> int | None:
        """Open the model now (so loading is not counted in the first unit); returns its context limit."""
        return self.worker.session(model).max_positions

    def run(self, unit: WorkUnit) -> tuple[list[ResultRow], int, float]:
        """The unit's rows, the prefills it took and its busy seconds."""
        start = time.perf_counter()
        before = self.worker.prefills
        rows = list(self.worker.run(unit))
        return rows, self.worker.prefills - before, time.perf_counter() - start


class RayExecutor:
    """Runs units on Ray actors. address: None starts a Ray instance on this machine, 'auto' or host:port joins
    a running cluster. gpus_per_worker > 0 gives each actor that many GPUs (one actor per group of GPUs);
    0 gives each actor cpus_per_worker CPUs. workers caps the number of actors. fault_hook(unit, sample) runs
    in the actor before each sample (fault-injection tests)."""

    name = "ray"

    def __init__(
        self,
        plan: StudyPlan,
        backend: Any,
        get_task: Callable[[str], Any],
        *,
        address: str | None = None,
        gpus_per_worker: float = 0,
        cpus_per_worker: int = 1,
        workers: int | None = None,
        batch_size: int = 1,
        stop_at_verdict: bool = True,
        progress: bool = True,
        max_attempts: int = 3,
        fault_hook: Callable[[WorkUnit, int], None] | None = None,
        load_first_alone: bool = True,
    ) -> None:
        if gpus_per_worker < 0 or cpus_per_worker < 1:
            raise ValueError("gpus_per_worker must be >= 0 and cpus_per_worker >= 1.")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1; got {workers}.")
        self.plan = plan
        self.backend = backend
        self.get_task = get_task
        self.address = address
        self.gpus_per_worker = gpus_per_worker
        self.cpus_per_worker = cpus_per_worker
        self.workers = workers
        self.batch_size = batch_size
        self.stop_at_verdict = stop_at_verdict
        self.progress = progress
        self.max_attempts = max_attempts
        self.fault_hook = fault_hook
        self.load_first_alone = load_first_alone
        self.prefills = 0
        self.retried: list[str] = []
        # Where the time went (read after execute): model loading, the driver's writes, actors' busy seconds.
        self.timings: dict[str, float] = {"load_s": 0.0, "write_s": 0.0, "busy_s": 0.0, "wall_s": 0.0}
        self.actor_count = 0
        self._ray: Any = None
        self._started = False

    def connect(self) -> int:
        """Join or start Ray and size the actor pool; returns the number of actors. Call before any work."""
        ray = import_ray()
        if not ray.is_initialized():
            if self.address not in (None, "auto"):
                check_reachable(self.address)
            try:
                if self.address is None:
                    ray.init(runtime_env={"env_vars": {"PYTHONPATH": _package_path()}}, log_to_driver=False)
                else:
                    ray.init(address=self.address, log_to_driver=False)
            except ConnectionError as err:
                raise RayUnavailableError(
                    f"Could not join the Ray cluster at {self.address!r} ({err}); start one with `ray start --head` "
                    "or leave out --ray-address to start Ray on this machine."
                ) from err
            self._started = True
        self._ray = ray
        resources = ray.cluster_resources()
        gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
        if self.gpus_per_worker > gpus:
            self.close()
            raise RayUnavailableError(
                f"--gpus-per-worker {self.gpus_per_worker:g} asks for more GPUs than the Ray cluster has ({gpus:g}); "
                "lower it, or join a cluster with more GPUs (--ray-address)."
            )
        if self.gpus_per_worker > 0:
            slots = int(gpus // self.gpus_per_worker)
        else:
            slots = int(cpus // self.cpus_per_worker)
        if slots < 1:
            self.close()
            raise RayUnavailableError(f"The Ray cluster has {cpus:g} CPUs; one worker needs {self.cpus_per_worker}.")
        self.actor_count = min(slots, self.workers) if self.workers else slots
        return self.actor_count

    def close(self) -> None:
        """Shut Ray down if this executor started it."""
        if self._started and self._ray is not None:
            self._ray.shutdown()
        self._started = False

    def _new_actor(self) -> Any:
        ray = self._ray
        options = {
            "batch_size": self.batch_size,
            "stop_at_verdict": self.stop_at_verdict,
            "fault_hook": self.fault_hook,
            "threads": self.cpus_per_worker if self.gpus_per_worker == 0 else None,
        }
        remote = ray.remote(StudyActor).options(
            num_cpus=self.cpus_per_worker if self.gpus_per_worker == 0 else 1,
            num_gpus=self.gpus_per_worker,
            max_restarts=0,
        )
        return remote.remote(self.plan, self.backend, self.get_task, options)

    def execute(self, units: list[WorkUnit], write: Callable[[ResultRow], None]) -> None:
        """Hand units to idle actors; write each returned row; retry a dead actor's unit on a new actor."""
        if self._ray is None:
            self.connect()
        ray = self._ray
        if not units:
            return
        actors = [self._new_actor() for _ in range(min(self.actor_count, len(units)))]
        # Load the first model on every actor at once; a failure to load or a too-long context shows here,
        # before any unit runs.
        started = time.perf_counter()
        # The first actor may convert and cache the model files: unless told the cache is warm
        # (load_first_alone=False), it loads alone and the rest follow at once.
        first = 1 if self.load_first_alone else 0
        limits = ray.get([a.load.remote(units[0].model) for a in actors[:first]])
        limits += ray.get([a.load.remote(units[0].model) for a in actors[first:]])
        for limit in limits:
            check_lengths(self.plan, units[0].model, limit)
        self.timings["load_s"] = time.perf_counter() - started
        queue: deque[WorkUnit] = deque(units)
        attempts: dict[WorkUnit, int] = {}
        idle = list(actors)
        running: dict[Any, tuple[Any, WorkUnit]] = {}
        bar = tqdm(total=len(units), unit="unit", disable=not self.progress, dynamic_ncols=True, desc="study (ray)")
        try:
            while queue or running:
                while idle and queue:
                    actor, unit = idle.pop(), queue.popleft()
                    running[actor.run.remote(unit)] = (actor, unit)
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    actor, unit = running.pop(ref)
                    try:
                        rows, prefills, busy = ray.get(ref)
                    except ray.exceptions.RayActorError as err:
                        attempts[unit] = attempts.get(unit, 0) + 1
                        if attempts[unit] >= self.max_attempts:
                            raise RuntimeError(
                                f"Unit {unit.label()} failed on {attempts[unit]} workers in a row; last error: {err}"
                            ) from err
                        self.retried.append(unit.label())
                        queue.appendleft(unit)
                        actors.remove(actor)
                        fresh = self._new_actor()
                        actors.append(fresh)
                        idle.append(fresh)
                        continue
                    except ray.exceptions.RayTaskError as err:
                        raise err.as_instanceof_cause() from None
                    wrote = time.perf_counter()
                    for row in rows:
                        write(row)
                    self.timings["write_s"] += time.perf_counter() - wrote
                    self.timings["busy_s"] += busy
                    self.prefills += prefills
                    idle.append(actor)
                    bar.set_postfix_str(unit.label(), refresh=False)
                    bar.update(1)
        finally:
            bar.close()
            self.timings["wall_s"] = time.perf_counter() - started
            for actor in actors:
                ray.kill(actor)


def _package_path() -> str:
    """PYTHONPATH for actors on this machine: this ctxsparse's source folder first, then the current path."""
    here = str(Path(__file__).resolve().parents[3])
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([here, *rest]))

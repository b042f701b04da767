"""Running a grid's cells on Ray (``pip install editlab[cluster]``).

One actor per (model, device): a :class:`ModelWorker` loads its model once and then runs cell after
cell on it, one at a time. An actor asks Ray for what its model's cells need (``num_cpus`` CPU
threads, ``num_gpus`` GPUs; Ray's ``CUDA_VISIBLE_DEVICES`` picks the device). The driver hands a
worker its next cell when it is free, so queued cells, retries and the run store stay with the
driver; results come back as plain dicts. A worker whose model has no queued cells left is
stopped, freeing its resources for another model's worker.

``ray.init()`` starts a local Ray on this machine's cores (and GPUs) unless ``address`` names a
cluster to join (``"auto"``, ``"ray://head:10001"``, ...). On a cluster every node needs editlab
installed and the grid's dataset and corpus files at the same paths.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from editlab.runs.grid import Cell, CellState, Driver, Experiment, ModelSpec, describe

# Test hook: the path of a marker file. The first cell to start while the file does not exist
# creates it and kills its worker process (as an out-of-memory kill or a lost node would), so a
# test can check that the cell is retried on a new worker.
KILL_ONCE_ENV = "EDITLAB_GRID_TEST_KILL_ONCE"
# Passed on to the workers: operator limits, cache and data roots, offline mode, the test hook.
FORWARD_PREFIXES = ("EDITLAB_", "HF_", "TRANSFORMERS_", "XDG_CACHE_HOME", "XDG_DATA_HOME")


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError(
            "running a grid on Ray needs Ray: pip install 'editlab[cluster]' (or pip install 'ray>=2.9'); "
            "without it, run the grid in-process (editlab grid --in-process)"
        ) from None
    return ray


class ModelWorker:
    """A Ray actor holding one resident model (made a remote class by :func:`_worker_class`)."""

    def __init__(self, experiment: Experiment, model: ModelSpec):
        import torch

        torch.set_num_threads(model.threads)
        self.experiment, self.model = experiment, model
        t0 = time.perf_counter()
        self.resident = experiment.load(model)
        self.load_seconds = time.perf_counter() - t0

    def info(self) -> dict:
        import socket

        return {"pid": os.getpid(), "host": socket.gethostname(), "load_seconds": self.load_seconds}

    def run(self, cell: Cell) -> dict:
        marker = os.environ.get(KILL_ONCE_ENV)
        if marker:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        if cell.model.key != self.model.key:  # the driver never does this; say so if it ever did
            raise ValueError(f"a worker holding {self.model.name} was handed a cell of {cell.model.name}")
        return self.experiment.run(self.resident, cell)


_REMOTE = None


def _worker_class():
    global _REMOTE
    if _REMOTE is None:
        ray = _ray()
        # The driver retries cells itself (once), so Ray neither restarts actors nor retries calls.
        _REMOTE = ray.remote(max_restarts=0, max_task_retries=0)(ModelWorker)
    return _REMOTE


def _local_resources() -> dict:
    num_gpus = 0
    try:
        import torch

        num_gpus = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch CUDA: a CPU machine
        pass
    return {"num_cpus": os.cpu_count() or 1, "num_gpus": num_gpus}


def _env(model: ModelSpec, local: bool, extra: Mapping | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARD_PREFIXES)}
    threads = str(model.threads)
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"})
    if local:  # the workers import the editlab this driver runs (a checkout on PYTHONPATH included)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            [root, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]]
        )
    env.update(dict(extra or {}))
    return env


def _error_text(e: BaseException) -> str:
    """The cell's own exception for a task error; what happened to the worker otherwise."""
    ray = _ray()
    if isinstance(e, ray.exceptions.RayTaskError):
        cause = getattr(e, "cause", None)
        if cause is not None and not isinstance(cause, ray.exceptions.RayError):
            return describe(cause)
        return describe(e).splitlines()[0]
    text = str(e)
    if "creation task" in text:  # the actor's __init__ (loading the model) raised: its last traceback line
        lines = [x.strip() for x in text.splitlines() if x.strip()]
        return lines[-1] if lines else type(e).__name__
    # Ray's message goes on for a paragraph; its first sentence says what happened.
    first = " ".join(text.split()).split(". ")[0]
    return f"worker died ({type(e).__name__}: {first})"


def run(
    driver: Driver,
    experiment: Experiment,
    *,
    workers: int | None = None,
    address: str | None = None,
    runtime_env: Mapping | None = None,
    poll_seconds: float = 1.0,
) -> None:
    """Run the driver's queued cells on Ray actors (see the module docstring)."""
    ray = _ray()
    if not driver.queue:  # every cell is stored already: no need to start Ray
        return
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            res = _local_resources()
            ray.init(
                num_cpus=res["num_cpus"],
                num_gpus=res["num_gpus"],
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        started_here = True
    local = not address
    try:
        _schedule(ray, driver, experiment, workers, local, runtime_env, poll_seconds)
    finally:
        if started_here:
            ray.shutdown()


def _capacity(ray, models: list[ModelSpec]) -> int:
    """How many workers of the most demanding model the cluster holds at once."""
    total = ray.cluster_resources()
    fits = []
    for m in models:
        n = []
        if m.num_cpus:
            n.append(int(total.get("CPU", 0) // m.num_cpus))
        if m.num_gpus:
            n.append(int(total.get("GPU", 0) // m.num_gpus))
        fits.append(min(n) if n else 0)
    return min(fits) if fits else 0


class _Scheduler:
    """The driver's side of a Ray grid: which workers are idle or busy, and whose model would not load."""

    def __init__(
        self,
        ray,
        driver: Driver,
        experiment: Experiment,
        models: dict,
        workers: int | None,
        local: bool,
        runtime_env: Mapping | None,
    ):
        self.ray, self.driver, self.experiment, self.models = ray, driver, experiment, models
        self.local, self.runtime_env = local, runtime_env
        total = ray.cluster_resources()
        for m in models.values():
            if m.num_cpus > total.get("CPU", 0) or m.num_gpus > total.get("GPU", 0):
                raise ValueError(
                    f"a worker of {m.name} asks for {m.num_cpus:g} CPU and {m.num_gpus:g} GPU; the Ray cluster has "
                    f"{total.get('CPU', 0):g} CPU and {total.get('GPU', 0):g} GPU in all"
                )
        self.slots = workers or max(1, _capacity(ray, list(models.values())))
        self.remote = _worker_class()
        self.idle: list[tuple] = []  # (actor, model key, name)
        self.busy: dict = {}  # object ref -> (actor, model key, name, state)
        self.load_failures: dict[str, list[str]] = {}
        self.serial = 0

    def queued(self, key: str) -> list[CellState]:
        """The queued cells of one model."""
        return [s for s in self.driver.queue if s.cell.model.key == key]

    def retire(self, actor) -> None:
        """Stop a worker (it may be gone already)."""
        try:
            self.ray.kill(actor)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _hand(self, actor, key: str, name: str, s: CellState) -> None:
        """Start a queued cell on a worker."""
        self.driver.queue.remove(s)
        self.driver.start(s, name)
        self.busy[actor.run.remote(s.cell)] = (actor, key, name, s)

    def give_up_unloadable(self) -> None:
        """Give up on cells whose model cannot be loaded (it failed retries + 1 times)."""
        driver = self.driver
        for s in list(driver.queue):
            if len(self.load_failures.get(s.cell.model.key, ())) > driver.retries:
                driver.queue.remove(s)
                driver.give_up(s, self.load_failures[s.cell.model.key][-1])

    def feed_idle(self) -> None:
        """Idle workers take the next cell of their model, or stop when there is none."""
        for actor, key, name in list(self.idle):
            todo = self.queued(key)
            self.idle.remove((actor, key, name))
            if not todo:
                self.retire(actor)
                continue
            self._hand(actor, key, name, todo[0])

    def start_workers(self) -> None:
        """Free slots start workers for the model with the most queued cells per worker."""
        driver, runtime_env = self.driver, self.runtime_env
        while len(self.idle) + len(self.busy) < self.slots and driver.queue:
            holding: dict[str, int] = {}
            for _, key, _n, *_ in [*self.idle, *self.busy.values()]:
                holding[key] = holding.get(key, 0) + 1
            key = max(
                {s.cell.model.key for s in driver.queue}, key=lambda k: len(self.queued(k)) / (holding.get(k, 0) + 1)
            )
            if len(self.queued(key)) <= holding.get(key, 0):
                break  # every queued cell already has a worker of its model coming free
            model = self.models[key]
            self.serial += 1
            name = f"worker {self.serial} ({model.name})"
            env = {"env_vars": _env(model, self.local, (runtime_env or {}).get("env_vars"))}
            env.update({k: v for k, v in (runtime_env or {}).items() if k != "env_vars"})
            actor = self.remote.options(num_cpus=model.num_cpus, num_gpus=model.num_gpus, runtime_env=env).remote(
                self.experiment, model
            )
            self._hand(actor, key, name, self.queued(key)[0])

    def collect(self, poll_seconds: float) -> None:
        """Take one finished cell's result (or its error) within ``poll_seconds``; its worker goes idle
        or is stopped."""
        ray, driver = self.ray, self.driver
        ready, _ = ray.wait(list(self.busy), num_returns=1, timeout=poll_seconds)
        if not ready:
            return
        ref = ready[0]
        actor, key, name, s = self.busy.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the cell raised; its worker lives on
            driver.fail(s, _error_text(e))
            self.idle.append((actor, key, name))
            return
        except ray.exceptions.RayError as e:  # the worker died (killed, out of memory, lost node, failed load)
            text = _error_text(e)
            if "creation task" in str(e):
                text = f"loading {self.models[key].name} failed: {text}"
                self.load_failures.setdefault(key, []).append(text)
            self.retire(actor)
            driver.fail(s, text)
            return
        driver.finish(s, result)
        self.idle.append((actor, key, name))

    def stop_all(self) -> None:
        """Stop every worker still held."""
        for actor, *_ in [*self.idle, *self.busy.values()]:
            self.retire(actor)


def _schedule(
    ray,
    driver: Driver,
    experiment: Experiment,
    workers: int | None,
    local: bool,
    runtime_env: Mapping | None,
    poll_seconds: float,
) -> None:
    """Run the driver's queued cells on Ray workers, one actor per model and device, until none is left."""
    models = {s.cell.model.key: s.cell.model for s in driver.queue}
    if not models:
        return
    sched = _Scheduler(ray, driver, experiment, models, workers, local, runtime_env)
    try:
        while driver.queue or sched.busy:
            sched.give_up_unloadable()
            sched.feed_idle()
            sched.start_workers()
            if sched.busy:
                sched.collect(poll_seconds)
    finally:
        sched.stop_all()

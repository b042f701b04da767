"""Running a grid's cells: one after another in this process, or on Ray actors
(:mod:`editlab.runs.grid_ray`). The cells, their driver and how a cell is computed live in
:mod:`editlab.runs.grid`; neither of those imports this module.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from editlab.runs import grid_ray
from editlab.runs.grid import Cell, Driver, Experiment, GridResult, GridSpec, Progress, describe
from editlab.runs.writer import open_store


def run_grid(
    grid: GridSpec | Sequence[Cell],
    store=None,
    *,
    backend: str = "in-process",
    workers: int | None = None,
    address: str | None = None,
    progress: Progress | None = None,
    experiment: Experiment | None = None,
    residents: Mapping[str, Any] | None = None,
    retries: int = 1,
    runtime_env: Mapping | None = None,
) -> GridResult:
    """Run a grid's cells and store each finished cell as a run.

    ``backend``: ``"in-process"`` (one cell after another here; ``residents`` maps a model *name* to
    an already loaded handle to use instead of loading it) or ``"ray"`` (see
    :func:`editlab.runs.grid_ray.run`: ``workers`` actors at most, ``address`` of a cluster, else a
    local Ray). ``store``: a RunStore, a path, or None (keep nothing, skip nothing).
    ``progress(states, changed)`` is called on every change of a cell. A cell that fails is retried
    ``retries`` times after the others; the grid never stops at one failure."""

    cells = grid.cells() if isinstance(grid, GridSpec) else list(grid)
    experiment = experiment or Experiment()
    store = open_store(store)
    driver = Driver(cells, store, progress, retries, experiment.kind)
    t0 = time.perf_counter()
    if backend == "in-process":
        run_in_process(driver, experiment, residents or {})
    elif backend == "ray":
        grid_ray.run(driver, experiment, workers=workers, address=address, runtime_env=runtime_env)
    else:
        raise ValueError(f"backend {backend!r} is not one of in-process, ray")
    return GridResult(driver.states, backend, time.perf_counter() - t0)


def run_in_process(driver: Driver, experiment: Experiment, residents: Mapping[str, Any]) -> None:
    resident_key, resident = None, None
    load_failures: dict[str, list[str]] = {}  # a model that failed to load retries+1 times is given up
    while driver.queue:
        # Keep the model that is loaded for as long as cells of it are queued.
        pick = next((s for s in driver.queue if s.cell.model.key == resident_key), driver.queue[0])
        driver.queue.remove(pick)
        model = pick.cell.model
        if len(load_failures.get(model.key, ())) > driver.retries:
            driver.give_up(pick, load_failures[model.key][-1])
            continue
        driver.start(pick, "in-process")
        try:
            if model.key != resident_key:
                resident_key, resident = None, None  # let the previous model go before loading the next
                resident = residents.get(model.name) or experiment.load(model)
                resident_key = model.key
        except Exception as e:
            load_failures.setdefault(model.key, []).append(f"loading {model.name} failed: {describe(e)}")
            driver.fail(pick, load_failures[model.key][-1])
            continue
        try:
            result = experiment.run(resident, pick.cell)
        except Exception as e:
            driver.fail(pick, describe(e))
            continue
        driver.finish(pick, result)

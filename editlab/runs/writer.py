"""Stored runs: the one module that writes runs into the run store and resumes them.

Every runner that stores its results goes through here — ``editlab sweep`` (:func:`run_stored`,
resumed by replaying the recorded edits), ``editlab bench`` (one checkpoint per method, rows reused
by :func:`editlab.runs.bench.run_bench`), each cell of ``editlab grid`` (:func:`record_result`) — so how a
run starts, resumes, and ends (done, cancelled, failed, interrupted) is decided once, in
:func:`keeping_status`. A checkpoint is written once and never overwritten: a resumed run that
reaches a step an earlier attempt stored keeps the stored one and goes on (resuming is idempotent).

May import: the engine (:mod:`editlab.runs.experiments`) and the store (:mod:`editlab.runs.store`); nothing
that imports this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from editlab.core.errors import Cancelled
from editlab.runs.experiments import At, Evaluator, Measured, Outcome, Plan, Progress, run

__all__ = ["StoredRun", "open_store", "keeping_status", "start_or_resume", "run_stored", "record_result"]


@dataclass(frozen=True)
class StoredRun:
    run_id: int
    status: str
    steps: tuple[int, ...]
    resumed_from: int | None = None
    replay_exact: bool | None = None


def open_store(store):
    """A :class:`~editlab.runs.store.RunStore` from a store, a path, or None/False (no store: None)."""
    if store is None or store is False:
        return None
    from editlab.runs.store import RunStore

    return store if hasattr(store, "add_checkpoint") else RunStore(store)


def start_or_resume(store, kind: str, config: Mapping, resume: bool = True) -> tuple[int, bool]:
    """(run id, resumed?): the most recent stored run of ``kind`` with exactly this ``config`` when
    ``resume``, else a new run."""
    existing = store.find_run(kind, config) if resume else None
    if existing is not None:
        return existing.id, True
    return store.create_run(kind, config), False


@contextlib.contextmanager
def keeping_status(store, run_id: int, done_note: Callable[[], str | None] = lambda: None) -> Iterator[None]:
    """The run is ``running`` for the block and says afterwards how it ended: ``done`` (with
    ``done_note()`` if any), ``cancelled`` (:class:`Cancelled`), ``failed`` (any other exception,
    with its message) or ``interrupted`` (Ctrl-C, the app stopping the script: resumable). The
    exception goes on."""
    store.set_status(run_id, "running")
    try:
        yield
    except Cancelled:
        store.set_status(run_id, "cancelled")
        raise
    except Exception as e:
        store.set_status(run_id, "failed", note=f"{type(e).__name__}: {e}"[:500])
        raise
    except BaseException:
        store.set_status(run_id, "interrupted")
        raise
    store.set_status(run_id, "done", note=done_note())


def run_stored(
    handle,
    plan: Plan,
    evaluators: Sequence[Evaluator],
    store,
    kind: str,
    config: Mapping,
    record: Callable[[Measured, At, Outcome], tuple[dict, dict, dict]],
    *,
    resume: bool = True,
    progress: Callable[[Progress], None] | None = None,
    cancel=None,
    what: str = "this run",
) -> StoredRun:
    """Run a sequential ``plan`` as a stored run of ``kind`` identified by ``config``: every
    checkpoint goes to ``store`` as soon as it is measured (``record(measured, at, outcome)`` makes
    its metrics, samples and timings; metrics should carry ``weights_digest``, ``at.digest()``);
    an identical stored run resumes after its last checkpoint by replaying the edits up to it
    (the first new checkpoint's timings say so). The run's status says how it ended
    (:func:`keeping_status`)."""
    run_id, resumed = start_or_resume(store, kind, config, resume)
    done = {c.step: c for c in store.checkpoints(run_id, samples=False)} if resumed else {}
    steps = plan.steps()
    if all(s in done for s in steps):
        store.set_status(run_id, "done")
        return StoredRun(run_id, "done", tuple(steps), resumed_from=max(done) if done else None)
    last = max((s for s in steps if s in done), default=None)
    expected = done[last].metrics.get("weights_digest") if last else None
    outcome = Outcome(plan)
    kept: list[int] = []
    on_measured = _checkpoint_writer(store, run_id, record, outcome, steps, done, kept)
    with keeping_status(store, run_id, _kept_note(kept)):
        run(
            handle,
            plan,
            evaluators,
            progress=progress,
            cancel=cancel,
            on_measured=on_measured,
            skip=last,
            expected_digest=expected,
            run_id=run_id,
            outcome=outcome,
            what=what,
        )
        if outcome.replay_exact is False:
            store.set_status(
                run_id,
                "running",
                note=(
                    f"resumed at {last} edits by replay; the replayed weights differ from the recorded ones "
                    "(digest mismatch), so later checkpoints come from a state that is not bit-identical"
                ),
            )
    return StoredRun(run_id, "done", tuple(steps), resumed_from=last, replay_exact=outcome.replay_exact)


def _checkpoint_writer(
    store,
    run_id: int,
    record: Callable[[Measured, At, Outcome], tuple[dict, dict, dict]],
    outcome: Outcome,
    steps,
    done: dict,
    kept: list[int],
) -> Callable[[Measured, At], None]:
    """The run's ``on_measured``: each checkpoint recorded and written at once (the first new one after
    a replay with the replay's timings); one already stored is kept as it is and its step added to ``kept``."""

    def on_measured(m: Measured, at: At) -> None:
        metrics_, samples, timings = record(m, at, outcome)
        if outcome.replayed and m.step == min(s for s in steps if s not in done):
            timings.update(
                {"replay_s": outcome.replay_s, "replayed_edits": outcome.replayed, "replay_exact": outcome.replay_exact}
            )
        if not store.add_checkpoint(run_id, m.step, metrics_, samples=samples, timings=timings, exists_ok=True):
            kept.append(m.step)  # already stored (an earlier attempt wrote it): kept as it is, never overwritten

    return on_measured


def _kept_note(kept: list[int]) -> Callable[[], str | None]:
    """The run's ``done_note``: which checkpoints were already stored when this run reached them."""

    def note() -> str | None:
        if kept:
            return (
                f"checkpoint(s) at {', '.join(map(str, kept))} edits were already stored when this run "
                "reached them (another process ran it too); the stored ones were kept"
            )
        return None

    return note


def record_result(
    store,
    kind: str,
    config: Mapping,
    checkpoints: Sequence[Mapping],
    note: str | None = None,
    replaces: Callable[[object], bool] = lambda run: False,
) -> int:
    """Write a finished result (computed elsewhere, e.g. a grid cell on a Ray worker) as one run:
    status ``done`` only once every checkpoint is in, so a writer that dies halfway leaves a run no
    reader takes for finished. Unfinished runs of ``kind`` for which ``replaces(run)`` holds (the
    same cell's leftovers) are removed first."""
    for old in store.runs(kind):
        if old.status != "done" and replaces(old):
            store.delete_run(old.id)
    run_id = store.create_run(kind, config, status="running")
    for c in checkpoints:
        store.add_checkpoint(run_id, c["step"], c["metrics"], c.get("samples"), c.get("timings"))
    store.set_status(run_id, "done", note=note)
    return run_id

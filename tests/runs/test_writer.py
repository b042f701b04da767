"""The run store's one writer: a stored run resumes by replay, keeps its checkpoints, says how it
ended, and resuming it again is a no-op."""

import pytest

from editlab.runs import experiments, writer
from editlab.runs.experiments import Plan
from editlab.runs.store import RunStore


@pytest.fixture(scope="module")
def facts5(cf_facts):
    return tuple(cf_facts[:5])


def test_a_stored_run_resumes_by_replay(handle, shift, facts5, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    plan = Plan(facts5[:3], shift, checkpoints=(1, 3))
    calls = []

    def record(m, at, outcome):
        calls.append(m.step)
        return {"weights_digest": m.values["weights_digest"]}, {}, {"edit_s": m.edit_s}

    first = writer.run_stored(
        handle, Plan(facts5[:3], shift, checkpoints=(1,)), [experiments.Digest()], store, "test", {"x": 1}, record
    )
    assert first.status == "done" and calls == [1]
    # the same configuration with one more checkpoint: step 1 is replayed, step 3 measured
    res = writer.run_stored(handle, plan, [experiments.Digest()], store, "test", {"x": 1}, record)
    assert res.run_id == first.run_id and res.resumed_from == 1 and res.replay_exact is True and calls == [1, 3]
    (c3,) = [c for c in store.checkpoints(res.run_id) if c.step == 3]
    assert c3.timings["replayed_edits"] == 1 and c3.timings["replay_exact"] is True


def test_resuming_is_idempotent_when_a_checkpoint_it_reaches_is_already_stored(handle, shift, facts5, tmp_path):
    """A run that reaches a step an earlier attempt (or another process) stored keeps the stored
    checkpoint, goes on and ends done; running it again changes nothing."""
    store = RunStore(tmp_path / "runs.sqlite")
    plan = Plan(facts5[:3], shift, checkpoints=(1, 2, 3))
    calls = []

    def record(m, at, outcome):
        calls.append(m.step)
        if m.step == 2:  # someone else got there first, with its own figures
            store.add_checkpoint(store.find_run("test", {"x": 2}).id, 2, {"weights_digest": "theirs"})
        return {"weights_digest": m.values["weights_digest"]}, {}, {}

    res = writer.run_stored(handle, plan, [experiments.Digest()], store, "test", {"x": 2}, record)
    run_ = store.run(res.run_id)
    assert res.status == run_.status == "done" and calls == [1, 2, 3]
    stored = {c.step: c.metrics["weights_digest"] for c in store.checkpoints(res.run_id)}
    assert sorted(stored) == [1, 2, 3] and stored[2] == "theirs"  # never overwritten
    assert "already stored" in run_.note
    again = writer.run_stored(handle, plan, [experiments.Digest()], store, "test", {"x": 2}, record)
    assert again.run_id == res.run_id and again.status == "done" and calls == [1, 2, 3]
    with pytest.raises(Exception, match="never overwritten"):
        store.add_checkpoint(res.run_id, 2, {"weights_digest": "again"})


def test_a_run_says_how_it_ended(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    ids = [store.create_run("test", {"i": i}) for i in range(4)]
    with writer.keeping_status(store, ids[0], lambda: "all well"):
        assert store.run(ids[0]).status == "running"
    for run_id, exc in zip(ids[1:], (experiments.Cancelled(), ValueError("bad value"), KeyboardInterrupt())):
        with pytest.raises(type(exc)):
            with writer.keeping_status(store, run_id):
                raise exc
    got = [(store.run(i).status, store.run(i).note) for i in ids]
    assert got == [
        ("done", "all well"),
        ("cancelled", None),
        ("failed", "ValueError: bad value"),
        ("interrupted", None),
    ]


def test_a_result_recorded_at_once_replaces_only_unfinished_leftovers(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    leftover = store.create_run("bench", {"cell": "a", "try": 1}, status="running")
    finished = store.create_run("bench", {"cell": "a", "try": 0}, status="done")
    new = writer.record_result(
        store,
        "bench",
        {"cell": "a", "try": 2},
        [{"step": 0, "metrics": {"x": 1}}],
        note="grid cell a",
        replaces=lambda r: r.config.get("cell") == "a",
    )
    assert [r.id for r in store.runs("bench")] == [finished, new] and leftover not in {r.id for r in store.runs()}
    assert store.run(new).status == "done" and [c.metrics for c in store.checkpoints(new)] == [{"x": 1}]

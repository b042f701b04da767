"""The run store: runs, checkpoints, resume lookup, export, concurrent writers, foreign files."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3

import pandas as pd
import pytest

from editlab.runs.store import Checkpoint, RunConfig, RunStore, StoreError, default_path

CONFIG = RunConfig(
    model="smollm2-135m-instruct",
    revision="r1",
    method="rome",
    hparams={"layer": 5, "v_lr": 0.5},
    dataset="cf.json",
    seed=0,
    extra={"counts": [1, 2]},
)


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def test_run_roundtrip_with_checkpoints_in_step_order(store):
    rid = store.create_run("sweep", CONFIG)
    store.add_checkpoint(
        rid,
        2,
        {"efficacy": 0.5, "ability": {"mmlu": 0.25}},
        samples=[{"prompt": "p", "text": "t"}],
        timings={"edit_s": 3.0},
    )
    store.add_checkpoint(rid, 1, {"efficacy": 1.0, "ability": {"mmlu": 0.3}}, timings={"edit_s": 1.5})
    run = store.run(rid)
    assert run.config["method"] == "rome" and run.config["hparams"] == {"layer": 5, "v_lr": 0.5}
    assert run.config["counts"] == [1, 2] and run.n_checkpoints == 2 and run.last_step == 2
    cps = store.checkpoints(rid)
    assert [c.step for c in cps] == [1, 2]
    assert cps[1] == Checkpoint(
        rid,
        2,
        {"efficacy": 0.5, "ability": {"mmlu": 0.25}},
        [{"prompt": "p", "text": "t"}],
        {"edit_s": 3.0},
        cps[1].created,
    )
    assert store.checkpoints(rid, samples=False)[1].samples is None


def test_nan_metrics_are_stored_as_null(store):
    rid = store.create_run("sweep", CONFIG)
    store.add_checkpoint(rid, 1, {"ppl": float("nan"), "x": float("inf")})
    assert store.checkpoints(rid)[0].metrics == {"ppl": None, "x": None}


def test_find_run_matches_exact_config_only(store):
    rid = store.create_run("sweep", CONFIG)
    assert store.find_run("sweep", CONFIG).id == rid
    assert store.find_run("sweep", CONFIG.to_dict()).id == rid  # a dict with the same content
    assert store.find_run("other", CONFIG) is None
    changed = RunConfig(**{**CONFIG.__dict__, "seed": 1})
    assert store.find_run("sweep", changed) is None
    rid2 = store.create_run("sweep", CONFIG)
    assert store.find_run("sweep", CONFIG).id == rid2  # the latest of identical runs


def test_status_and_listing(store):
    a = store.create_run("sweep", CONFIG)
    b = store.create_run("bench", {"model": "m"})
    store.set_status(a, "done")
    assert [r.id for r in store.runs()] == [a, b]
    assert [r.id for r in store.runs("bench")] == [b]
    assert store.run(a).status == "done"
    with pytest.raises(ValueError, match="not one of"):
        store.set_status(a, "finished")
    with pytest.raises(KeyError):
        store.set_status(999, "done")


def test_a_step_is_never_overwritten(store):
    rid = store.create_run("sweep", CONFIG)
    store.add_checkpoint(rid, 1, {"efficacy": 1.0})
    with pytest.raises(StoreError, match="already has a checkpoint at step 1"):
        store.add_checkpoint(rid, 1, {"efficacy": 0.0})
    assert store.checkpoints(rid)[0].metrics == {"efficacy": 1.0}


def test_state_is_written_with_its_checkpoint_and_replaced(store):
    rid = store.create_run("sweep", CONFIG)
    assert store.state(rid) is None
    store.add_checkpoint(rid, 1, {"a": 1}, state=b"one")
    store.add_checkpoint(rid, 2, {"a": 2}, state=b"two")
    assert store.state(rid) == (2, b"two")
    # a failed checkpoint (duplicate step) leaves the state as it was
    with pytest.raises(StoreError):
        store.add_checkpoint(rid, 2, {"a": 3}, state=b"three")
    assert store.state(rid) == (2, b"two")


def test_reopening_keeps_everything(tmp_path):
    path = tmp_path / "runs.sqlite"
    rid = RunStore(path).create_run("sweep", CONFIG)
    RunStore(path).add_checkpoint(rid, 1, {"efficacy": 1.0})
    assert RunStore(path).checkpoints(rid)[0].metrics == {"efficacy": 1.0}


def test_config_must_be_plain_json(store):
    with pytest.raises(ValueError, match="plain JSON"):
        store.create_run("sweep", {"model": object()})


def test_export_csv_parquet_json(store, tmp_path):
    a = store.create_run("sweep", CONFIG)
    store.add_checkpoint(a, 1, {"efficacy": 1.0, "ability": {"mmlu": 0.25}}, samples=["s1"], timings={"edit_s": 2.0})
    store.add_checkpoint(a, 2, {"efficacy": 0.5, "ability": {"mmlu": 0.5}}, samples=["s2"])
    b = store.create_run("sweep", {**CONFIG.to_dict(), "method": "kn"})
    store.add_checkpoint(b, 1, {"efficacy": 0.0})
    csv = pd.read_csv(store.export([a, b], tmp_path / "out.csv"))
    assert list(csv["step"]) == [1, 2, 1]
    assert list(csv["method"]) == ["rome", "rome", "kn"]
    assert csv.loc[1, "ability.mmlu"] == 0.5 and csv.loc[0, "time.edit_s"] == 2.0
    pq = pd.read_parquet(store.export([a], tmp_path / "out.parquet"))
    assert list(pq["efficacy"]) == [1.0, 0.5]
    data = json.loads(store.export([a], tmp_path / "x.dat", fmt="json").read_text())
    assert data[0]["config"]["hparams"]["layer"] == 5
    assert [c["samples"] for c in data[0]["checkpoints"]] == [["s1"], ["s2"]]
    with pytest.raises(ValueError, match="export format"):
        store.export([a], tmp_path / "out.xlsx")


def test_default_path_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLAB_STORE", str(tmp_path / "a.sqlite"))
    assert default_path() == tmp_path / "a.sqlite"
    monkeypatch.delenv("EDITLAB_STORE")
    monkeypatch.setenv("EDITLAB_DATA_DIR", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "runs.sqlite"
    assert RunStore().path == tmp_path / "data" / "runs.sqlite"


def test_a_text_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("my precious notes\n")
    with pytest.raises(StoreError, match="notes.sqlite.*not an SQLite database"):
        RunStore(path)
    assert path.read_text() == "my precious notes\n"


def test_another_programs_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    con.execute("INSERT INTO invoices VALUES (1, 9.5)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="other.db.*another program's SQLite database.*invoices"):
        RunStore(path)
    con = sqlite3.connect(path)
    assert con.execute("SELECT * FROM invoices").fetchall() == [(1, 9.5)]
    assert {r[0] for r in con.execute("SELECT name FROM sqlite_master")} == {"invoices"}
    con.close()


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path)
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value='99' WHERE key='version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer editlab"):
        RunStore(path)


def test_a_corrupted_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "runs.sqlite"
    s = RunStore(path)
    rid = s.create_run("sweep", CONFIG)
    for step in range(1, 40):
        s.add_checkpoint(rid, step, {"x": step}, samples=["y" * 2000])
    con = sqlite3.connect(path)  # fold the WAL back into the main file
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for i in range(2 * page, len(data) - page, page):  # scribble over every page but the first
        data[i + 100 : i + 400] = b"\xff" * 300
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="runs.sqlite"):
        RunStore(path).checkpoints(rid)


def _writer(path, rid, start, n):
    store = RunStore(path)
    for step in range(start, start + n):
        store.add_checkpoint(rid, step, {"step": step}, samples=["x" * 100], state=b"s" * 1000)
        store.set_status(rid, "running")


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "runs.sqlite"
    rid = RunStore(path).create_run("sweep", CONFIG)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), rid, k * 100, 30)) for k in range(3)]
    for p in procs:
        p.start()
    _writer(str(path), rid, 1000, 30)  # and this process at the same time
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    steps = [c.step for c in RunStore(path).checkpoints(rid)]
    assert len(steps) == 120 and len(set(steps)) == 120

"""The benchmark runner: protocols, the unedited row, every metric, the run store, export.

Protocol tests use ``shift`` (tests/stand_in_method.py: a fixed, seeded rank-one change per fact),
so they exercise the runner on the real model without paying for real edits. One test runs ROME.
"""

import json
import math
import threading

import pandas as pd
import pytest

from editlab import methods
from editlab.core.errors import Cancelled
from editlab.facts.datasets import load_dataset
from editlab.measure.metrics import METRIC_KEYS
from editlab.runs.bench import UNEDITED, BenchConfig, BenchResult, compare, load_result, past_runs, run_bench
from editlab.runs.store import RunStore
from tests import stand_in_method
from tests.conftest import COUNTERFACT, TEST_MOM2_TOKENS, need_shared


@pytest.fixture(scope="module")
def facts3():
    return load_dataset(need_shared(COUNTERFACT), n=3, seed=0)


def positive_after(result: BenchResult, method: str) -> list[float]:
    return [f.report.rows_of("positive")[0].after.p_new for f in result.row(method).facts]


# ---- protocols ------------------------------------------------------------------------------------
def test_protocols_differ_as_labelled(handle, shift, facts3):
    def run(**kw):
        cfg = BenchConfig(dataset=str(COUNTERFACT), methods=(shift,), negative_edits=False, generation_tokens=2, **kw)
        return run_bench(handle, cfg, dataset=facts3)

    indep = run(mode="independent")
    each = run(mode="sequential", evaluate="after_each")
    end = run(mode="sequential", evaluate="at_end")
    assert indep.protocol == "independent edits (each from the unedited model), batch size 1"
    assert end.protocol == "sequential edits, batch size 1, evaluated at the end (retention)"
    a, b, c = positive_after(indep, shift), positive_after(each, shift), positive_after(end, shift)
    # The first edit starts from the unedited model under every protocol ...
    assert a[0] == pytest.approx(b[0], rel=1e-5)
    # ... later ones start from the edited model only when sequential ...
    assert not math.isclose(a[2], b[2], rel_tol=1e-4)
    # ... and at the end every fact sees every edit: the last fact is scored in the same state either way,
    # the first is scored after two more edits (retention).
    assert c[2] == pytest.approx(b[2], rel=1e-5)
    assert not math.isclose(c[0], b[0], rel_tol=1e-4)
    # Independent edits leave the shared model unedited: the unedited rows agree across runs.
    assert indep.row(UNEDITED).metrics == end.row(UNEDITED).metrics
    assert [f.report.rows_of("positive")[0].before for f in indep.row(shift).facts] == [
        f.report.rows_of("positive")[0].unedited for f in indep.row(shift).facts
    ]


def test_batches_edit_together(handle, shift, facts3):
    cfg = BenchConfig(
        dataset=str(COUNTERFACT), methods=(shift,), batch_size=3, negative_edits=False, generation_tokens=2
    )
    batched = run_bench(handle, cfg, dataset=facts3)
    seq = run_bench(
        handle,
        BenchConfig(
            dataset=str(COUNTERFACT),
            methods=(shift,),
            mode="sequential",
            evaluate="at_end",
            negative_edits=False,
            generation_tokens=2,
        ),
        dataset=facts3,
    )
    # One batch of all three facts = the same weights as three sequential edits, scored at the end.
    assert positive_after(batched, shift) == pytest.approx(positive_after(seq, shift), rel=1e-5)
    assert batched.config["batch_size"] == 3 and "batch size 3" in batched.protocol


def test_unknown_method_and_bad_settings_are_refused(facts3):
    with pytest.raises(ValueError, match=r"unknown editing method 'nosuch'; available: .*rome"):
        BenchConfig(dataset="x", methods=("rome", "nosuch")).validate()
    with pytest.raises(ValueError, match="mode 'parallel'"):
        BenchConfig(dataset="x", mode="parallel").validate()
    with pytest.raises(ValueError, match="batch_size"):
        BenchConfig(dataset="x", batch_size=0).validate()
    with pytest.raises(ValueError, match="hyperparameters given for memit"):
        BenchConfig(dataset="x", methods=("rome",), hparams={"memit": {}}).validate()


# ---- store, resume, export ------------------------------------------------------------------------
def test_results_are_stored_resumed_and_exported(handle, shift, facts3, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    cfg = BenchConfig(dataset=str(COUNTERFACT), methods=(shift,), generation_tokens=2)
    stages = []
    first = run_bench(handle, cfg, dataset=facts3, store=store, progress=lambda d, t, s: stages.append(s))
    assert any("shift: editing fact" in s for s in stages) and any("negated edit" in s for s in stages)
    run = store.run(first.run_id)
    assert run.kind == "bench" and run.status == "done" and run.n_checkpoints == 2
    assert run.config["mode"] == "independent" and run.config["hparams"] == {
        shift: {"layer": 5, "scale": 2.0, "fail": False}
    }

    again_stages = []
    again = run_bench(handle, cfg, dataset=facts3, store=store, progress=lambda d, t, s: again_stages.append(s))
    assert again.run_id == first.run_id and again_stages == []  # found finished in the store: nothing re-run
    pd.testing.assert_frame_equal(again.table(), first.table())

    loaded = load_result(store, first.run_id)
    pd.testing.assert_frame_equal(loaded.table(), first.table())
    f0 = loaded.row(shift).facts[0]
    assert f0.report == first.row(shift).facts[0].report and f0.negative == first.row(shift).facts[0].negative
    assert [r.id for r in past_runs(store)] == [first.run_id]
    assert list(compare([loaded, first])["method"]) == [UNEDITED, shift, UNEDITED, shift]

    csv = pd.read_csv(first.export(tmp_path / "b.csv"))
    assert len(csv) == 6 and set(csv["method"]) == {UNEDITED, shift} and csv["protocol"].nunique() == 1
    pq = pd.read_parquet(first.export(tmp_path / "b.parquet"))
    assert list(pq["ES"].fillna(-1)) == list(csv["ES"].fillna(-1))
    data = json.loads(first.export(tmp_path / "b.json").read_text())
    assert data["protocol"] == first.protocol and len(data["rows"][1]["facts"]) == 3
    with pytest.raises(ValueError, match="export format 'xlsx'"):
        first.export(tmp_path / "b.xlsx")
    # The store's own export carries one row per method.
    df = store.to_dataframe([first.run_id])
    assert list(df["method"]) == [UNEDITED, shift]


def test_rows_of_other_runs_with_the_same_settings_are_reused(handle, shift, facts3, tmp_path, monkeypatch):
    monkeypatch.setitem(methods.REGISTRY, "shift2", stand_in_method.MODULE)  # a second "method"
    store = RunStore(tmp_path / "runs.sqlite")
    common = dict(dataset=str(COUNTERFACT), negative_edits=False, generation_tokens=2)
    first = run_bench(handle, BenchConfig(methods=(shift,), **common), dataset=facts3.subset(2, 0), store=store)
    stages = []
    both = run_bench(
        handle,
        BenchConfig(methods=(shift, "shift2"), **common),
        dataset=facts3.subset(2, 0),
        store=store,
        progress=lambda d, t, s: stages.append(s),
    )
    assert both.run_id != first.run_id
    assert any(s.startswith("shift2: editing") for s in stages) and not any(
        s.startswith("shift: editing") for s in stages
    )
    assert both.row(shift).metrics == first.row(shift).metrics
    assert f"reused from run #{first.run_id}" in both.row(shift).notes
    assert [c.step for c in store.checkpoints(both.run_id)] == [0, 1, 2]  # the new run holds every row itself
    # Other hyperparameters are another experiment: nothing is reused.
    stages.clear()
    other = run_bench(
        handle,
        BenchConfig(methods=(shift,), hparams={shift: {"scale": 1.0}}, **common),
        dataset=facts3.subset(2, 0),
        store=store,
        progress=lambda d, t, s: stages.append(s),
    )
    assert any(s.startswith("shift: editing") for s in stages)
    assert not any("reused" in note for note in other.row(shift).notes)


def test_cancelling_stops_the_run_and_keeps_the_finished_rows(handle, shift, facts3, tmp_path):
    """One way to cancel, as the sweep: an Event; the engine's Cancelled; the run marked cancelled."""
    store = RunStore(tmp_path / "runs.sqlite")
    cancel = threading.Event()

    def progress(done, total, stage):
        if "editing fact 2" in stage:
            cancel.set()

    cfg = BenchConfig(dataset=str(COUNTERFACT), methods=(shift,), negative_edits=False, generation_tokens=2)
    with pytest.raises(Cancelled):
        run_bench(handle, cfg, dataset=facts3, store=store, progress=progress, cancel=cancel)
    (run,) = past_runs(store)
    assert run.status == "cancelled" and [c.step for c in store.checkpoints(run.id)] == [0]  # the unedited row


def test_a_failed_edit_is_recorded_and_scored_as_the_model_it_left(handle, shift, facts3):
    cfg = BenchConfig(
        dataset=str(COUNTERFACT),
        methods=(shift,),
        negative_edits=False,
        generation_tokens=2,
        hparams={shift: {"fail": True}},
    )
    res = run_bench(handle, cfg, dataset=facts3.subset(1, None))
    (f,) = res.row(shift).facts
    assert "stand-in failure" in f.error and res.row(shift).failed == 1
    # The weights were rolled back, so the "after" state is the unedited model.
    assert f.scores["ES"] == res.row(UNEDITED).facts[0].scores["ES"]
    assert res.table().loc[shift, "failed"] == 1


# ---- the real thing -------------------------------------------------------------------------------
@pytest.mark.slow
def test_rome_bench_has_every_metric_and_the_unedited_row(handle, facts3, corpus_path, tmp_path):
    cfg = BenchConfig(
        dataset=str(COUNTERFACT),
        methods=("rome",),
        corpus=corpus_path,
        generation_tokens=4,
        hparams={"rome": {"mom2_n_tokens": TEST_MOM2_TOKENS}},
    )
    res = run_bench(handle, cfg, dataset=facts3, store=tmp_path / "runs.sqlite")
    table = res.table()
    assert list(table.index) == [UNEDITED, "rome"]
    every = [k for k in METRIC_KEYS if k != "portability_acc"]  # CounterFact has no portability questions
    assert table.loc[["rome", UNEDITED], every].notna().all().all()
    rome, base = table.loc["rome"], table.loc[UNEDITED]
    assert rome["ES"] == 1.0 and base["ES"] < 1.0  # the edits took; the unedited model prefers the truth
    assert rome["rewrite_acc"] > base["rewrite_acc"]
    assert base["locality"] == 1.0 and base["NP"] == base["PP"] and base["NN"] == base["PN"]
    assert rome["RE"] == pytest.approx(rome["PP"] - rome["PN"])
    assert table.loc["rome", "n"] == 3 and table.loc["rome", "failed"] == 0 and table.loc["rome", "s/edit"] > 0
    assert any("statistics" in n for n in res.row("rome").notes)

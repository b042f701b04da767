"""The Benchmark page: a run started from the page lands in the store and is shown (table with the
unedited row, charts, per-fact probes, exports); past runs are listed and comparable."""

import pytest

from editlab import methods
from editlab.runs.bench import UNEDITED, BenchConfig, run_bench
from editlab.runs.store import RunStore
from editlab_app.bench import examples_dataset

from .. import stand_in_method
from .conftest import open_app

BENCH = "views/bench.py"


@pytest.fixture
def bench_env(app_env, tmp_path):
    app_env.setitem(methods.REGISTRY, stand_in_method.NAME, stand_in_method.MODULE)
    app_env.setenv("EDITLAB_STORE", str(tmp_path / "runs.sqlite"))
    return tmp_path / "runs.sqlite"


def frame(at, column: str):
    """The first table on the page with this column (AppTest does not expose dataframe keys)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise KeyError(column)


def test_a_benchmark_run_from_the_page_is_shown_and_stored(bench_env):
    at = open_app(BENCH)
    assert at.title[0].value == "Benchmark"
    at.multiselect(key="bench_methods").set_value([stand_in_method.NAME])
    at.number_input(key="bench_n").set_value(2)
    at.number_input(key="bench_gen").set_value(2)
    at.checkbox(key="bench_negative").uncheck()
    at.button(key="FormSubmitter:bench_form-Run benchmark").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]

    (run,) = RunStore(bench_env).runs("bench")
    assert run.status == "done" and run.config["methods"] == [stand_in_method.NAME] and run.config["n"] == 2
    # One table per convention, each with the unedited baseline row first.
    cf = frame(at, "Efficacy (ES)")
    assert list(cf.index) == [UNEDITED, stand_in_method.NAME]
    assert list(frame(at, "Rewrite acc.").index) == [UNEDITED, stand_in_method.NAME]
    assert frame(at, "Rewrite acc.").loc[UNEDITED, "Locality"] == 1.0
    assert "RE" not in frame(at, "PP").columns and "Rectified efficacy (PP − PN)" in frame(at, "PP").columns
    assert "independent edits" in " ".join(m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 2  # bars and the efficacy / rectified-efficacy scatter

    # Per-fact drill-down: every probe of the chosen fact, unedited and after.
    at.selectbox(key="bench_drill_method").select(stand_in_method.NAME).run()
    probes = frame(at, "greedy")
    kinds = {label.split(" [")[0] for label in probes["probe"]}
    assert {"positive", "negation", "true_false", "paraphrase", "neighborhood", "generation"} <= kinds
    assert set(probes["state"]) == {"unedited", "after"}
    assert "predicted" in frame(at, "predicted").columns

    # The past-runs table lists the run.
    assert frame(at, "run")["run"].tolist() == [run.id]
    assert len(at.get("download_button")) == 3


def test_past_runs_are_listed_comparable_and_can_be_shown(bench_env, handle):
    store = RunStore(bench_env)
    facts = examples_dataset().subset(2, 0)
    ids = []
    for batch in (1, 2):
        cfg = BenchConfig(
            dataset=facts.name,
            methods=(stand_in_method.NAME,),
            batch_size=batch,
            negative_edits=False,
            generation_tokens=2,
        )
        ids.append(run_bench(handle, cfg, dataset=facts, store=store).run_id)
    at = open_app(BENCH, operator=True)  # written outside the app: the operator's runs
    assert frame(at, "run")["run"].tolist() == ids[::-1]  # newest first
    at.multiselect(key="bench_compare").set_value(ids).run()
    both = frame(at, "protocol")
    assert both["run"].tolist() == [f"#{ids[0]}"] * 2 + [f"#{ids[1]}"] * 2
    assert set(both["protocol"]) == {
        "independent edits (each from the unedited model), batch size 1",
        "independent edits (each from the unedited model), batch size 2",
    }
    at.multiselect(key="bench_compare").set_value([ids[0]]).run()
    at.button(key="bench_show_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value == f"Run #{ids[0]}"
    assert list(frame(at, "Efficacy (ES)").index) == [UNEDITED, stand_in_method.NAME]

"""The sweep page: stored runs are plotted and their checkpoints' samples readable; a sweep started
from the page lands in the store."""

import pytest

from editlab.runs.store import RunStore
from editlab.runs.sweep import KIND

from .conftest import open_app

SWEEP = "views/sweep.py"


@pytest.fixture
def sweep_env(app_env, tmp_path):
    app_env.setenv("EDITLAB_STORE", str(tmp_path / "runs.sqlite"))
    return tmp_path / "runs.sqlite"


def frame(at, column: str):
    """The first table on the page with this column (AppTest does not expose dataframe keys)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise KeyError(column)


def _stored_run(path) -> int:
    """A finished two-checkpoint sweep, written straight into the store."""
    store = RunStore(path)
    rid = store.create_run(
        KIND,
        {
            "model": "smollm2-135m-instruct",
            "method": "rome",
            "dataset": "cf.json",
            "counts": [1, 2],
            "seed": 0,
            "hparams": {},
        },
    )
    for step, es, empty, text in ((0, 0.0, 0.0, "Paris."), (1, 1.0, 0.0, "Rome, the city."), (2, 0.5, 0.5, "")):
        store.add_checkpoint(
            rid,
            step,
            {
                "edits": step,
                "quality": {"all": {"ES": es, "PS": es, "NS": 1.0, "PN": es, "RE": 0.0, "FC": 0.5, "n": 2}},
                "ability": {"mmlu": 0.3, "perplexity": 20.0 + step},
                "muting": {"empty_rate": empty, "repeat_rate": 0.2, "ngram_entropy": 3.0 - step},
            },
            samples={
                "muting": [{"prompt": "The capital of France is", "text": text, "chat": False}],
                "edits": [{"prompt": "p", "target_new": "t", "target_true": "u", "greedy": "g"}],
            },
        )
    store.set_status(rid, "done")
    return rid


def test_stored_runs_are_plotted_and_samples_readable(sweep_env):
    rid = _stored_run(sweep_env)
    at = open_app(SWEEP, operator=True)  # written outside the app: the operator's run
    assert frame(at, "run")["run"].tolist() == [rid]
    assert at.multiselect(key="sweep_shown").value == [rid]
    assert len(at.get("plotly_chart")) >= 1
    # the latest checkpoint is shown first: its empty output is marked as such
    steps = [s for s in at.selectbox if s.key and s.key.startswith("sweep_detail_step")]
    assert steps[0].value == 2
    assert frame(at, "output")["output"].tolist() == ["∅ (empty)"]
    steps[0].select(1).run()
    assert frame(at, "output")["output"].tolist() == ["Rome, the city."]
    metrics = frame(at, "value")  # the checkpoint's metrics (the shipped run's table has no "value")
    assert metrics.loc[metrics["metric"] == "efficacy", "value"].tolist() == [1.0]


@pytest.mark.slow
def test_a_sweep_started_on_the_page_is_stored(sweep_env):
    at = open_app(SWEEP)
    at.text_input(key="sweep_counts").input("1")
    at.number_input(key="sweep_items").set_value(0)  # no general ability: keep the test short
    at.button(key="FormSubmitter:sweep_form-Start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    (run,) = RunStore(sweep_env).runs(KIND)
    assert run.status == "done" and run.config["method"] == "rome"
    assert [c.step for c in RunStore(sweep_env).checkpoints(run.id)] == [0, 1]
    assert at.multiselect(key="sweep_shown").value == [run.id]
    checkpoint = RunStore(sweep_env).checkpoints(run.id)[1]
    assert checkpoint.metrics["quality"]["latest"]["ES"] == 1.0  # the first example fact was written


def test_the_shipped_muting_run_is_drawn_open_until_a_sweep_of_ones_own_is_stored(sweep_env):
    at = open_app(SWEEP)
    shipped = [e for e in at.expander if e.label.startswith("The muting effect, as shipped")]
    assert len(shipped) == 1 and shipped[0].proto.expanded
    assert len(shipped[0].get("plotly_chart")) == 1
    assert any("No sweep of yours stored yet" in c.value for c in at.caption)
    _stored_run(sweep_env)
    at = open_app(SWEEP, operator=True)  # written outside the app: the operator's run
    shipped = [e for e in at.expander if e.label.startswith("The muting effect, as shipped")]
    assert len(shipped) == 1 and not shipped[0].proto.expanded

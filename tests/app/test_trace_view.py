"""The edit page's causal-tracing heatmaps and predicate-ablation section."""

import numpy as np
import pytest

from editlab import Fact, Measure, Probe, ProbeReport, ProbeRow
from editlab.measure.ablation import predicate_variants
from editlab.measure.trace import trace
from editlab.methods import rome
from editlab_app import state as S
from editlab_app import trace_view as TV
from tests.conftest import tiny_handle

from .conftest import open_app, texts

EIFFEL = ("The Eiffel Tower is located in the city of", "Eiffel Tower")


@pytest.fixture(scope="module")
def tiny_trace(handle):
    return trace(
        tiny_handle("llama", handle.tokenizer),
        *EIFFEL,
        answer="Paris",
        kinds=("mlp", "residual"),
        tokens="subject",
        samples=2,
        cache=False,
    )


def test_heatmap_is_the_token_by_layer_effect_with_the_edit_layer_marked(tiny_trace):
    r = tiny_trace
    fig = TV.heatmap(r, "mlp", marked=[2], method="rome")
    z = np.array(fig.data[0].z, dtype=float)
    assert z.shape == (len(r.tokens), r.n_layers)
    np.testing.assert_allclose(z[1:4], r.indirect_effect("mlp")[1:4])
    assert np.isnan(z[4:]).all()  # only the subject's tokens were traced: the rest stays blank
    assert list(fig.layout.yaxis.ticktext) == [
        "'The'",
        "' E'*",
        "'iffel'*",
        "' Tower'*",
        "' is'",
        "' located'",
        "' in'",
        "' the'",
        "' city'",
        "' of'",
    ]
    [line] = [s for s in fig.layout.shapes if s.type == "line"]
    assert line.x0 == line.x1 == 2 and "rome layer 2" in [a.text for a in fig.layout.annotations]
    prof = TV.profile({"unedited": r, "edited": r}, "residual", [2], "rome")
    assert [t.name for t in prof.data] == ["unedited: P(Paris)", "edited: P(Paris)"]
    assert list(prof.data[0].y) == pytest.approx(r.subject_last_effect("residual").tolist())


def test_method_layers_are_the_methods_defaults(handle):
    assert TV.method_layers("rome", handle) == [rome.HParams.for_model(handle).layer]


def test_ablation_table_and_sentences():
    fact = Fact("Eiffel Tower", EIFFEL[0], "Rome", "Paris")
    m = {"original": (0.9, 0.01), "negated": (0.8, 0.02), "predicate-removed": (0.6, 0.05)}
    rows = tuple(
        ProbeRow(
            Probe("ablation", p, rule=rule),
            Measure("", (), p_new=0.01, p_true=0.8),
            None,
            Measure("", (), p_new=m[rule][0], p_true=m[rule][1]),
        )
        for rule, p in predicate_variants(fact.prompt, fact.subject)
    )
    report = ProbeReport(fact=fact, rows=rows)  # a probe run: unedited vs now
    df = TV.ablation_table(report)
    assert df.index.tolist() == ["original", "negated", "predicate-removed"]
    assert df.loc["negated", "P(new) now"] == 0.8 and df.loc["negated", "P(true) unedited"] == 0.8


def test_edit_page_shows_the_ablation_and_traces_the_unedited_model(app_env):
    at = open_app("views/edit.py")
    at.button(key="probe_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [ablation] = [d.value for d in at.dataframe if d.value.index.name == "predicate"]
    assert ablation.index.tolist() == ["original", "negated", "predicate-removed"]
    assert any("whether the prompt says" in c or "predicate changes" in c for c in texts(at.caption)), texts(at.caption)
    charts = len(at.get("plotly_chart"))
    at.selectbox(key="trace.scope").select("subject")
    at.number_input(key="trace.samples").set_value(1)
    at.button(key="trace.run_before").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert len(at.get("plotly_chart")) == charts + 2  # the heatmap and the per-layer profile
    result = at.session_state[TV.TRACES]["before"]
    assert result.answer.strip() == "Paris" and result.state_key == at.session_state[S.SESSION].handle.fingerprint
    assert any(c.startswith("unedited: restoring the MLP outputs at ' Tower'") for c in texts(at.caption)), texts(
        at.caption
    )

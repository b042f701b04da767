"""The edit page: form, bad input, a real ROME edit side by side, re-running probes, undo, and two
browser sessions that share the resident model without seeing each other's edits."""

import pytest

from editlab import methods
from editlab.methods import rome
from editlab_app import gallery as G
from editlab_app import state as S
from tests.conftest import TEST_MOM2_TOKENS, state_hash

from .conftest import open_app, texts

EDIT = "views/edit.py"


def fill(at, **fields):
    for name, value in fields.items():
        widget = (
            at.text_area(key=f"fact.{name}")
            if name in ("paraphrases", "neighbors")
            else at.text_input(key=f"fact.{name}")
        )
        widget.input(value)


def cloze(at):
    """The completions table (first st.table) as a DataFrame indexed by probe label."""
    return at.table[0].value


def test_form_is_prefilled_from_the_gallery_with_every_method(app_env):
    at = open_app(EDIT)
    name, fact = G.load_gallery()[0]
    assert at.selectbox(key="gallery_choice").value == name
    assert at.text_input(key="fact.subject").value == fact.subject
    assert at.text_input(key="fact.prompt").value == fact.prompt
    assert at.text_input(key="fact.target_new").value == fact.target_new
    assert (
        at.text_area(key="fact.neighbors").value.splitlines()[0]
        == f"{fact.neighbors[0].prompt} => {fact.neighbors[0].answer}"
    )
    assert at.selectbox(key="method").options == methods.available()
    assert at.selectbox(key="method").value == "rome"
    handle = at.session_state[S.SESSION].handle
    prefix = f"hp.{handle.name}.rome."
    assert at.number_input(key=prefix + "layer").value == rome.HParams.for_model(handle).layer
    tokens = at.number_input(key=prefix + "mom2_n_tokens")
    assert tokens.value == TEST_MOM2_TOKENS and tokens.disabled  # fixed by the operator
    # what the method does, from its declared capabilities
    assert "rome writes several facts one after another; offers the negation-aware objective" in " ".join(
        texts(at.caption)
    )
    at.selectbox(key="method").select("ike").run()
    assert "ike writes a batch of facts jointly; edits by a context put before every prompt" in " ".join(
        texts(at.caption)
    )
    at.selectbox(key="method").select("rome").run()
    # another gallery entry fills the whole form
    other_name, other = G.load_gallery()[2]
    at.selectbox(key="gallery_choice").select(other_name).run()
    assert at.text_input(key="fact.subject").value == other.subject
    assert at.text_input(key="fact.target_true").value == other.target_true


@pytest.mark.parametrize(
    "fields, hp, message",
    [
        ({"target_new": ""}, {}, "target_new is empty"),
        ({"subject": "Big Ben"}, {}, "does not occur in"),
        ({}, {"layer": 99}, "out of range"),
    ],
)
def test_bad_input_shows_a_message_and_edits_nothing(app_env, fields, hp, message):
    at = open_app(EDIT)
    session = at.session_state[S.SESSION]
    before = state_hash(session.handle.model)
    for name, value in hp.items():
        at.number_input(key=f"hp.{session.handle.name}.rome.{name}").set_value(value).run()
    fill(at, **fields)
    at.button(key="edit_button").click().run()
    assert not at.exception
    [error] = at.error
    assert message in error.value and "Traceback" not in error.value
    assert session.records == []
    assert state_hash(session.handle.model) == before
    assert at.session_state[S.SESSION] is session and S.REPORT not in at.session_state


@pytest.mark.slow
def test_a_failed_edit_is_reported_in_words_and_rolled_back(app_env, tmp_path):
    """ROME cannot read the configured corpus: EditError, shown as a message; weights untouched."""
    app_env.setenv("EDITLAB_CORPUS", str(tmp_path / "missing-corpus.txt"))
    at = open_app(EDIT)
    session = at.session_state[S.SESSION]
    before = state_hash(session.handle.model)
    fill(at, paraphrases="", neighbors="")  # fewer probes: this test is about the failure
    at.button(key="edit_button").click().run()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("The edit failed and nothing was changed") and "missing-corpus.txt" in error.value
    assert session.records == [] and S.REPORT not in at.session_state
    with session.applied():
        assert state_hash(session.handle.model) == before


@pytest.mark.slow
def test_edit_side_by_side_rerun_probes_undo_and_an_isolated_second_session(app_env):
    a = open_app(EDIT)
    session = a.session_state[S.SESSION]
    fact = G.load_gallery()[0][1]  # the prefilled Eiffel Tower → Rome
    a.button(key="edit_button").click().run()
    assert not a.exception and not a.error, texts(a.error)
    assert len(session.records) == 1
    t = cloze(a)
    assert {"P(new) unedited", "P(true) unedited", "P(new) before", "P(new) after", "P(true) after"} <= set(t.columns)
    assert t.loc["positive", "P(new) unedited"] < t.loc["positive", "P(true) unedited"]
    assert t.loc["positive", "P(new) after"] > t.loc["positive", "P(true) after"]
    assert t.loc["negation", "prompt"] == "The Eiffel Tower is not located in the city of"
    assert t.loc["positive", "P(new) before"] == t.loc["positive", "P(new) unedited"]  # first edit
    flags = [c for c in texts(a.caption) if c.startswith("flags (after):")]
    assert flags and "positive_prefers_new=True" in flags[0]
    if "new_target_survives_negation=True" in flags[0]:  # the finding is spelled out, not just flagged
        assert any("New target survives negation" in w for w in texts(a.warning))
    assert cloze(a).index.tolist()[:2] == ["positive", "negation"]
    assert a.table[1].value.index.tolist() == ["fact-check (new)", "fact-check (true)"]
    assert a.table[1].value.loc["fact-check (new)", "verdict after"] in ("True", "False")
    assert len(a.get("plotly_chart")) == 1  # the bars are drawn

    # A second browser session on the same resident model sees the unedited model.
    b = open_app(EDIT)
    assert b.session_state[S.SESSION].handle is session.handle
    b.button(key="probe_button").click().run()
    tb = cloze(b)
    assert tb.loc["positive", "P(new) now"] == pytest.approx(t.loc["positive", "P(new) unedited"], abs=1e-6)
    assert tb.loc["positive", "P(new) now"] < tb.loc["positive", "P(true) now"]
    assert b.session_state[S.SESSION].records == [] and len(session.records) == 1

    # A edits a probe prompt and runs the probes again: no new edit, the edited model is measured.
    [neg_box] = [w for w in a.text_input if (w.key or "").startswith("probe.") and w.key.endswith(".negation")]
    neg_box.input("The Eiffel Tower is definitely not located in the city of")
    a.button(key="rerun_probes").click().run()
    assert not a.exception and not a.error, texts(a.error)
    assert len(session.records) == 1
    t2 = cloze(a)
    assert t2.loc["negation", "prompt"] == "The Eiffel Tower is definitely not located in the city of"
    assert t2.loc["positive", "P(new) now"] == pytest.approx(t.loc["positive", "P(new) after"], rel=1e-3)

    # Undo: the same probes on A's model give the before values again.
    a.button(key="undo_last").click().run()
    assert not a.exception and session.records == []
    assert "Undid edit" in a.success[0].value
    t3 = cloze(a)
    assert t3.loc["positive", "P(new) now"] == pytest.approx(t.loc["positive", "P(new) before"], rel=1e-4)
    assert t3.loc["positive", "P(true) now"] == pytest.approx(t.loc["positive", "P(true) before"], rel=1e-4)
    assert fact.prompt == t3.loc["positive", "prompt"]


@pytest.mark.slow
def test_the_negation_aware_rome_is_one_field_away_and_the_published_one_click(app_env):
    """negation_weight 1 in ROME's hyperparameters selects its best form (the two-sided v* term): the
    negated prompt's comparison turns to the true target while the positive keeps the new one; the
    published method (weight 0) is the field's default."""
    at = open_app(EDIT)
    session = at.session_state[S.SESSION]
    prefix = f"hp.{session.handle.name}.rome."
    assert at.text_input(key=prefix + "negation_objective").value == "two-sided"
    at.number_input(key=prefix + "negation_weight").set_value(1.0).run()
    fill(at, paraphrases="", neighbors="")
    at.button(key="edit_button").click().run()
    assert not at.exception and not at.error, texts(at.error)
    [record] = session.records
    assert record.hparams["negation_weight"] == 1.0 and record.hparams["negation_objective"] == "two-sided"
    assert "predicate" not in record.info["facts"][0]
    t = cloze(at)
    assert t.loc["positive", "P(new) after"] > t.loc["positive", "P(true) after"]
    assert t.loc["negation", "P(true) after"] > t.loc["negation", "P(new) after"], t.loc["negation"]
    # the published method is the default the field shows and "Back to the defaults" restores
    assert at.number_input(key=prefix + "negation_weight").help == "default for this model: 0.0"
    assert rome.HParams.for_model(session.handle).negation_weight == 0.0

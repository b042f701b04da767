import pytest

from editlab import EditSession, Fact
from editlab.measure.probes import Probe
from tests.conftest import TEST_MOM2_TOKENS


@pytest.mark.slow
def test_sessions_do_not_see_each_others_edits(handle, corpus_path, cf_facts):
    fact = cf_facts[0]
    probes = [Probe("positive", fact.prompt, max_new_tokens=3)]
    a, b = EditSession(handle, corpus=corpus_path), EditSession(handle, corpus=corpus_path)
    [b_before] = b.measure_current(fact, probes)
    record, report = a.edit_and_compare(fact, "rome", {"mom2_n_tokens": TEST_MOM2_TOKENS}, probes)
    [row] = report.rows
    assert row.after.p_new > row.after.p_true and row.before == row.unedited
    [b_after] = b.measure_current(fact, probes)
    assert b_after == b_before  # B's view is untouched by A's edit
    [a_now] = a.measure_current(fact, probes)
    assert a_now.p_new == pytest.approx(row.after.p_new)
    # A second edit in A: its report's "before" is A's edited state, not the unedited model.
    # (Write another fact, probe the first one's prompt.)
    _, report2 = a.edit_and_compare(fact, "rome", {"mom2_n_tokens": TEST_MOM2_TOKENS}, probes, written=cf_facts[1])
    r2 = report2.rows[0]
    assert r2.before.p_new == pytest.approx(row.after.p_new) and r2.unedited.p_new == pytest.approx(row.unedited.p_new)
    # Undoing the earlier of two edits keeps the later one.
    a.undo(record)
    assert [r.facts[0] for r in a.records] == [cf_facts[1]]
    a.reset()


def test_undo_with_nothing_to_undo_is_a_clear_error(handle):
    with pytest.raises(ValueError, match="no edit to undo"):
        EditSession(handle).undo()


def test_unknown_method_is_named(handle):
    with pytest.raises(ValueError, match="unknown editing method 'nope'; available: .*rome"):
        EditSession(handle).edit(Fact("A", "A is in", "X"), "nope")


@pytest.mark.parametrize(
    "hparams,words",
    [
        ("v_lr=0.5", "got the str 'v_lr=0.5'"),
        (["v_lr", 0.5], "got the list"),
        (0.5, "got the float"),
    ],
)
def test_hyperparameters_it_cannot_use_are_a_message_saying_what_to_give(handle, hparams, words):
    from editlab.methods import memit

    session = EditSession(handle)
    for bad in (hparams, memit.HParams()):
        with pytest.raises(ValueError) as e:
            session.edit(Fact("Rome", "Rome is the capital of", "France"), "rome", bad)
        text = str(e.value)
        assert "give None (the defaults for this model), a mapping" in text and "rome.HParams.from_yaml" in text
    assert words in str(pytest.raises(ValueError, session.edit, Fact("A", "A is in", "X"), "rome", hparams).value)
    assert session.records == []


def test_each_model_state_is_measured_once(handle, monkeypatch, tmp_path):
    """The unedited column is measured once per model and probe set (then memory, then disk); an
    edit's "before" is the previous edit's "after"; undo returns to a state already measured.
    Uses a tiny model with the real tokenizer, edited by a rank-one write (GRACE-free, ROME, C = I)."""
    import editlab.session as session_module
    from tests.conftest import tiny_handle

    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    calls = []
    real = session_module.measure

    guesses = []

    def counted(model, tokenizer, fact, probes, prefix="", drafts=None):
        calls.append(fact.prompt)
        guesses.append(drafts)
        return real(model, tokenizer, fact, probes, prefix=prefix, drafts=drafts)

    monkeypatch.setattr(session_module, "measure", counted)
    h = tiny_handle("llama", handle.tokenizer)
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    probes = [Probe("positive", fact.prompt, max_new_tokens=2)]
    hp = {"layer": 1, "mom2_adjustment": False, "v_num_grad_steps": 3}
    s = EditSession(h, online=False)
    _, first = s.edit_and_compare(fact, "rome", hp, probes)
    assert len(calls) == 2  # unedited (= before), after
    _, second = s.edit_and_compare(fact, "rome", hp, probes)
    assert len(calls) == 3  # only the new after: unedited cached, before = the first edit's after
    assert second.rows[0].before == first.rows[0].after
    s.undo()
    assert s.measure_current(fact, probes)[0] == first.rows[0].after and len(calls) == 3
    fresh = EditSession(h, online=False)  # another session on the same model: the disk cache
    assert fresh.measure_unedited(fact, probes) == [first.rows[0].unedited] and len(calls) == 3
    assert guesses == [None] * 3  # nothing to guess from, or right after an edit of this fact
    # A new fact after an edit: unedited, then "before" (a new state for these probes) guided by
    # the unedited texts, then "after" unguided.
    other = Fact("Michel Rocard", "Michel Rocard is a native speaker of", "English", "French")
    _, third = s.edit_and_compare(other, "rome", hp, [Probe("positive", other.prompt, max_new_tokens=2)])
    assert len(calls) == 6 and guesses[3] is None and guesses[5] is None
    assert guesses[4] == [third.rows[0].unedited]


def test_probes_beyond_the_generation_limit_are_refused(handle, monkeypatch):
    monkeypatch.setenv("EDITLAB_MAX_GENERATION_TOKENS", "16")
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    s = EditSession(handle)
    with pytest.raises(ValueError, match="generation"):
        s.probes_for(fact)  # the default free generation asks for 40
    with pytest.raises(ValueError, match="tokens generated for the positive probe: 17 is above"):
        s.measure_current(fact, [Probe("positive", fact.prompt, max_new_tokens=17)])
    assert [p.max_new_tokens for p in s.probes_for(fact, generation_tokens=16)][-1] <= 16


@pytest.mark.slow
def test_the_verdict_comes_first_and_the_full_report_is_the_same(handle, monkeypatch, tmp_path):
    """With ``verdict``, the positive, negation and True/False probes are measured (unedited, before,
    after) and handed over before any paraphrase, neighbour or generation is measured after the
    edit; the returned report is the one measured without it, row for row."""
    import editlab.session as session_module
    from editlab.session import VERDICT_KINDS
    from tests import stand_in_method

    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(session_module.methods.REGISTRY, stand_in_method.NAME, stand_in_method.MODULE)
    fact = Fact(
        "Danielle Darrieux",
        "The mother tongue of Danielle Darrieux is",
        "English",
        "French",
        paraphrases=("Danielle Darrieux grew up speaking",),
        neighbors=(("Michel Rocard is a native speaker of", "French"),),
    )
    measured, seen = [], []
    real = session_module.measure

    def recorded(model, tokenizer, fact, probes, prefix="", drafts=None):
        measured.append({p.kind for p in probes})
        return real(model, tokenizer, fact, probes, prefix=prefix, drafts=drafts)

    monkeypatch.setattr(session_module, "measure", recorded)
    s = EditSession(handle, online=False)
    probes = s.probes_for(fact, None, generation_tokens=8)
    _, full = s.edit_and_compare(fact, stand_in_method.NAME, None, probes, verdict=lambda r: seen.append(len(measured)))
    first_kinds = set(VERDICT_KINDS) & {p.kind for p in probes}
    assert first_kinds == {"positive", "negation", "true_false"}
    assert len(seen) == 1 and all(kinds <= first_kinds for kinds in measured[: seen[0]])
    assert any(kinds - first_kinds for kinds in measured[seen[0] :])  # the rest came after the verdict
    s.reset()
    plain = EditSession(handle, online=False)
    _, reference = plain.edit_and_compare(fact, stand_in_method.NAME, None, probes)
    assert [r.probe for r in full.rows] == [r.probe for r in reference.rows] == list(probes)
    for a, b in zip(full.rows, reference.rows):
        for column in ("unedited", "before", "after"):
            x, y = getattr(a, column), getattr(b, column)
            assert x.greedy == y.greedy
            for field in ("p_new", "p_true", "p_yes", "p_no", "p_answer"):
                u, v = getattr(x, field, None), getattr(y, field, None)
                assert (u is None) == (v is None) and (u is None or u == pytest.approx(v, rel=1e-4, abs=1e-7))

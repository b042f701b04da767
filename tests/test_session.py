import pytest

from editlab import EditSession, Fact
from editlab.probes import Probe

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

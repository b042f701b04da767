"""The history page: every edit listed, undo any one, reset to the unedited model."""

import pytest

from editlab_app import gallery as G
from editlab_app import state as S
from tests.conftest import state_hash

from .conftest import open_app, texts

HISTORY = "views/history.py"
# A quick edit: these tests check the bookkeeping, not the quality of the edit.
QUICK = {"mom2_adjustment": False, "v_num_grad_steps": 2}


def test_history_without_edits_says_so(app_env):
    at = open_app(HISTORY)
    assert "No edits in this session yet" in at.info[0].value
    assert not at.button


@pytest.mark.slow
def test_history_lists_every_edit_undoes_any_one_and_resets(app_env):
    at = open_app(HISTORY)
    session = at.session_state[S.SESSION]
    model = session.handle.model
    unedited = state_hash(model)
    facts = [f for _, f in G.load_gallery()[:2]]
    first, second = (session.edit(f, "rome", QUICK) for f in facts)
    at.run()
    table = at.table[0].value
    assert table.index.tolist() == [first.id, second.id]
    assert table["method"].tolist() == ["rome", "rome"]
    assert table["fact"].tolist() == [f"{f.prompt} → {f.target_new}" for f in facts]
    with session.applied():
        edited = state_hash(model)
    assert edited != unedited

    at.button(key=f"undo_{first.id}").click().run()  # undo the older one; the newer stays
    assert not at.exception
    assert [r.id for r in session.records] == [second.id]
    assert f"Undid edit {first.id}" in at.success[0].value
    assert at.table[0].value.index.tolist() == [second.id]

    at.button(key="reset").click().run()
    assert session.records == [] and "Reset" in at.success[0].value
    assert "No edits in this session yet" in texts(at.info)[0]
    with session.applied():
        assert state_hash(model) == unedited  # bit for bit
    assert state_hash(model) == unedited  # and the shared model at rest was never edited

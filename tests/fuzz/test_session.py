"""EditSession.edit with fuzzed hyperparameters on a tiny random-weight model: an edit is made, or
refused with a bounded ValueError / EditError; a refused edit leaves every weight bit for bit as it
was (at rest and with the session's edits applied) and records nothing."""

import dataclasses
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from editlab import Fact, methods
from editlab.methods.base import EditError

from ..conftest import state_hash, tiny_session
from .strategies import accepted_or_refused, examples, settings, values
from .test_hparams import mappings

FACT = Fact(subject="Rome", prompt="Rome is the capital of", target_new="France", target_true="Italy")
QUICK = {"layer": 1, "mom2_adjustment": False, "v_num_grad_steps": 2}


@pytest.fixture(scope="module")
def session(handle, tmp_path_factory):
    s = tiny_session("llama", handle, tmp_path_factory.mktemp("fuzz-tiny"))
    s.edit(FACT, "rome", QUICK)  # one edit held, so "unchanged" covers the applied state too
    return s


@pytest.mark.slow
@settings(max_examples=examples(15))
@given(st.data())
def test_an_edit_with_any_hyperparameters_is_made_or_refused_leaving_the_weights(session, data):
    H = methods.get("rome").HParams
    fields = st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(H)]), values(), min_size=1, max_size=3)
    hparams = {**QUICK, **data.draw(st.one_of(fields, fields, mappings(H, max_size=3)))}  # mostly invalid
    model = session.handle.model
    at_rest, held = state_hash(model), len(session.records)
    with session.applied():
        applied = state_hash(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record, error = accepted_or_refused(session.edit, FACT, "rome", hparams, errors=(ValueError, EditError))
    if record is not None:
        session.undo(record)  # back to the one held edit, bit for bit
    else:
        assert len(session.records) == held
    assert state_hash(model) == at_rest
    with session.applied():
        assert state_hash(model) == applied

"""Second moments and context templates are computed on the unedited weights, whatever edits the
session holds: they are cached under the unedited model's key and every later user reads them."""

import contextlib

import pytest
import torch
from safetensors.torch import load_file

from editlab import EditSession, Fact
from editlab.core.paths import cache_root

from .conftest import tiny_session

FIRST = Fact(
    subject="Danielle Darrieux",
    prompt="The mother tongue of Danielle Darrieux is",
    target_new="English",
    target_true="French",
)
SECOND = Fact(subject="Toko Yasuda", prompt="Toko Yasuda plays the", target_new="piano", target_true="guitar")
EARLY = {"layer": 0, "mom2_adjustment": False, "v_num_grad_steps": 3}  # changes the keys of every later layer
LATE = {"layer": 2, "mom2_n_tokens": 600, "v_num_grad_steps": 2}  # needs C at layer 2


def cached_statistics() -> dict[str, torch.Tensor]:
    return {f.name: load_file(str(f))["mom2"] for f in sorted(cache_root().glob("stats/*/*.safetensors"))}


def cached_templates() -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted(cache_root().glob("templates/*.json"))}


def statistics_of_second_edit(session, monkeypatch, where) -> tuple[dict, dict]:
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(where))
    session.edit(SECOND, "rome", LATE)
    return cached_statistics(), cached_templates()


@pytest.fixture
def edited(handle, tmp_path, monkeypatch):
    """A tiny-model session holding one edit of layer 0 (which changes layer 2's keys)."""
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path / "first"))
    s = tiny_session("llama", handle, tmp_path)
    s.edit(FIRST, "rome", EARLY)
    return s


def test_statistics_computed_during_a_later_edit_equal_the_unedited_models_bit_for_bit(edited, tmp_path, monkeypatch):
    stats, templates = statistics_of_second_edit(edited, monkeypatch, tmp_path / "in-session")
    fresh = EditSession(edited.handle, corpus=edited.corpus, online=False)  # nothing applied: the unedited model
    ref_stats, ref_templates = statistics_of_second_edit(fresh, monkeypatch, tmp_path / "unedited")
    assert stats and stats.keys() == ref_stats.keys()
    assert all(torch.equal(stats[k], ref_stats[k]) for k in stats)
    assert templates == ref_templates


def test_without_the_unedited_view_the_statistics_would_differ(edited, tmp_path, monkeypatch):
    """The control: the same computation inside the session's edits gives other numbers, so the
    test above would catch a regression."""
    fresh = EditSession(edited.handle, corpus=edited.corpus, online=False)
    ref_stats, _ = statistics_of_second_edit(fresh, monkeypatch, tmp_path / "unedited")
    monkeypatch.setattr(EditSession, "unedited", lambda self, in_flight=None: contextlib.nullcontext())
    stats, _ = statistics_of_second_edit(edited, monkeypatch, tmp_path / "leaky")
    assert stats.keys() == ref_stats.keys()
    assert not all(torch.equal(stats[k], ref_stats[k]) for k in stats)


def test_the_session_state_comes_back_after_the_unedited_view(edited):
    name = next(iter(edited.records[0].weights_after))
    with edited.applied():
        with edited.unedited():
            assert torch.equal(edited._read([name])[name], edited.records[0].weights_before[name])
        assert torch.equal(edited._read([name])[name], edited.records[0].weights_after[name])
    assert torch.equal(edited._read([name])[name], edited.records[0].weights_before[name])  # at rest: unedited

"""Causal tracing: shapes and exactness on tiny random models; where the default model recalls facts."""

import json

import numpy as np
import pytest
import torch

from editlab import EditSession, Fact
from editlab.measure.trace import (
    KINDS,
    TraceResult,
    restored_probability,
    subject_token_range,
    trace,
    trace_session,
    trace_tokens,
    window_layers,
)
from tests.conftest import TEST_MOM2_TOKENS, tiny_handle

EIFFEL = ("The Eiffel Tower is located in the city of", "Eiffel Tower")
LOUVRE = ("The Louvre is located in the city of", "Louvre")


@pytest.fixture(scope="module")
def tiny(handle):
    return {f: tiny_handle(f, handle.tokenizer) for f in ("llama", "gpt2", "gpt_neox")}


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
def test_maps_are_token_by_layer_grids(tiny, family):
    h = tiny[family]
    r = trace(h, *EIFFEL, samples=2, cache=False)
    n_tok = len(h.tokenizer(EIFFEL[0]).input_ids)
    assert r.kinds == KINDS and r.subject_range == (1, 4) and r.tokens[r.subject_last] == " Tower"
    for k in KINDS:
        assert r.probabilities(k).shape == (n_tok, h.arch.n_layers)
        assert not np.isnan(r.probabilities(k)).any()
        assert r.subject_last_effect(k).shape == (h.arch.n_layers,)
        # Before the subject the corrupted state is the clean one: restoring it changes nothing.
        assert (r.indirect_effect(k)[0] == 0).all()
    again = TraceResult.from_dict(json.loads(r.to_json()))
    assert again.scores == r.scores and again.p_clean == r.p_clean


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
def test_restoring_every_layer_gives_back_the_clean_probability_exactly(tiny, family):
    h = tiny[family]
    n_tok = len(h.tokenizer(EIFFEL[0]).input_ids)
    every = {h.arch.layer(i): range(n_tok) for i in range(h.arch.n_layers)}
    r = restored_probability(h, *EIFFEL, answer="Paris", restore=every, samples=3)
    assert r["p_restored"] == r["p_clean"], r
    assert r["p_corrupted"] != r["p_clean"], r  # the noise did something to undo


def test_a_multi_token_answer_is_scored_as_a_whole(tiny):
    h = tiny["llama"]
    ids = h.tokenizer(" Champ de Mars", add_special_tokens=False).input_ids
    assert len(ids) > 1
    n_tok = len(h.tokenizer(EIFFEL[0]).input_ids)
    last = {h.arch.layer(h.arch.n_layers - 1): range(n_tok + len(ids) - 1)}
    r = restored_probability(h, *EIFFEL, answer="Champ de Mars", restore=last, samples=2)
    with torch.no_grad():
        full = torch.tensor([h.tokenizer(EIFFEL[0]).input_ids + ids])
        lp = h.model(input_ids=full).logits[0].log_softmax(-1)
    expected = float(sum(lp[n_tok - 1 + j, t] for j, t in enumerate(ids)).exp())
    assert r["p_clean"] == pytest.approx(expected, rel=1e-5)
    assert r["p_restored"] == r["p_clean"]


def test_sharing_the_corrupted_prefix_gives_the_same_maps(tiny):
    h = tiny["llama"]
    a = trace(h, *EIFFEL, answer="Paris", samples=2, cache=False)
    b = trace(h, *EIFFEL, answer="Paris", samples=2, cache=False, share_prefix=False)
    for k in KINDS:
        np.testing.assert_allclose(a.probabilities(k), b.probabilities(k), rtol=1e-5)


def test_seeded_cached_per_state_and_global_rng_untouched(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    h = tiny["gpt2"]
    rng = torch.random.get_rng_state()
    calls = []
    first = trace(h, *EIFFEL, kinds="mlp", samples=2, state_key="s1", progress=lambda d, t, s: calls.append((d, t, s)))
    assert torch.equal(rng, torch.random.get_rng_state())
    assert calls[-1][0] == calls[-1][1] == 9 * h.arch.n_layers and calls[-1][2] == "tracing mlp"
    again = trace(h, *EIFFEL, kinds="mlp", samples=2, state_key="s1")
    assert again.cached_kinds == ("mlp",) and again.scores == first.scores
    fresh = trace(h, *EIFFEL, kinds="mlp", samples=2, cache=False)
    assert fresh.scores == first.scores  # same seed, same numbers
    other_state = trace(h, *EIFFEL, kinds="mlp", samples=2, state_key="s2")
    assert other_state.cached_kinds == ()
    other_seed = trace(h, *EIFFEL, kinds="mlp", samples=2, seed=1, cache=False)
    assert other_seed.scores != first.scores


def test_a_quick_trace_of_one_token_is_reused_by_the_full_one(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    h = tiny["llama"]
    quick = trace(h, *EIFFEL, kinds="residual", tokens="subject_last", samples=2, state_key="k")
    p = quick.probabilities("residual")
    assert not np.isnan(p[3]).any() and np.isnan(p[4:]).all()
    calls = []
    full = trace(h, *EIFFEL, kinds="residual", samples=2, state_key="k", progress=lambda d, t, s: calls.append(t))
    assert calls[-1] == 8 * h.arch.n_layers  # every traced token but the cached one
    assert full.scores["residual"][3] == quick.scores["residual"][3]


def test_an_ike_edit_is_traced_with_its_context_in_front_and_the_grid_is_the_prompts(tiny, tmp_path, monkeypatch):
    """Tracing sees an edit as every evaluator does (EditSession.edited): for IKE, its context."""
    from editlab.model.tokens import target_ids

    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    h = tiny["llama"]
    session = EditSession(h)
    kw = dict(answer="Rome", kinds="residual", tokens="subject_last", samples=2)
    before = trace_session(session, *EIFFEL, **kw)
    session.edit(Fact("Eiffel Tower", EIFFEL[0], "Rome", "Paris"), "ike", {"k": 2})
    after = trace_session(session, *EIFFEL, **kw)
    prefix = session.prefix
    assert after.tokens == before.tokens and after.subject_range == before.subject_range == (1, 4)
    assert after.prefix_tokens == len(h.tokenizer(prefix).input_ids) > 0 and before.prefix_tokens == 0
    assert after.state_key != before.state_key  # an IKE session is not the unedited model's cache entry
    ids = h.tokenizer(prefix + EIFFEL[0]).input_ids
    [rome] = target_ids(h.tokenizer, "Rome")
    with torch.no_grad():
        p = float(h.model(input_ids=torch.tensor([ids])).logits[0, -1].softmax(-1)[rome])
    assert after.p_clean == pytest.approx(p, rel=1e-5) and after.p_clean != pytest.approx(before.p_clean, rel=1e-3)
    assert after.scores == trace(h, *EIFFEL, prefix=prefix, cache=False, **kw).scores


def test_window_and_token_selection():
    assert window_layers(0, 30, 10) == range(0, 5)
    assert window_layers(15, 30, 10) == range(10, 20)
    assert window_layers(29, 30, 10) == range(24, 30)
    assert window_layers(3, 30, 1) == range(3, 4)
    assert trace_tokens("subject", 10, (1, 4)) == [1, 2, 3]
    assert trace_tokens(None, 10, (1, 4)) == list(range(1, 10))
    assert trace_tokens([-1, 3], 10, (1, 4)) == [3, 9]
    with pytest.raises(ValueError, match="0..9"):
        trace_tokens([10], 10, (1, 4))


def test_clear_errors(handle, tiny):
    with pytest.raises(ValueError, match="does not occur"):
        subject_token_range(handle.tokenizer, EIFFEL[0], "Louvre")
    with pytest.raises(ValueError, match="not one of"):
        trace(tiny["llama"], *EIFFEL, kinds="mlps", cache=False)


# ---- the default model --------------------------------------------------------------------------
@pytest.mark.slow
def test_eiffel_tower_corruption_and_where_the_mlps_recall_paris(handle):
    """Corrupting "Eiffel Tower" loses most of P(Paris); restoring MLP outputs of an early window at
    the subject recovers much of it. On SmolLM2-135M the recall sits at "iffel", not at " Tower"."""
    r = trace(handle, *EIFFEL, kinds="mlp", tokens="subject", cache=False)
    ie = r.indirect_effect("mlp")
    table = "\n".join(f"{r.tokens[t]!r:>9}: " + " ".join(f"{v:+.2f}" for v in ie[t]) for t in range(*r.subject_range))
    msg = f"answer {r.answer!r}: P clean {r.p_clean:.3f}, corrupted {r.p_corrupted:.3f}\nMLP indirect effect:\n{table}"
    assert r.answer == " Paris", msg
    assert r.p_corrupted < 0.1 * r.p_clean, msg
    token, layer = np.unravel_index(np.nanargmax(ie), ie.shape)
    assert r.subject_range[0] <= token < r.subject_range[1] and layer < r.n_layers // 2, msg
    assert ie[token, layer] > 0.5 * (r.p_clean - r.p_corrupted), msg
    assert np.nanmax(ie[:, -5:]) < 0.05, msg  # the last layers' MLPs do not carry it
    print(msg)


@pytest.mark.slow
def test_louvre_mlp_effect_at_the_subjects_last_token_peaks_early_to_middle(handle):
    r = trace(handle, *LOUVRE, kinds="mlp", tokens="subject_last", cache=False)
    eff = r.subject_last_effect("mlp")
    msg = (
        f"answer {r.answer!r}: P clean {r.p_clean:.3f}, corrupted {r.p_corrupted:.3f}; MLP IE at "
        f"{r.tokens[r.subject_last]!r} per layer: " + " ".join(f"{v:+.2f}" for v in eff)
    )
    assert r.answer == " Paris" and r.p_corrupted < 0.1 * r.p_clean, msg
    assert 1 <= r.peak_layer("mlp") < r.n_layers // 2, msg
    assert eff.max() > 0.4 * (r.p_clean - r.p_corrupted), msg
    assert eff[-10:].max() < 0.05, msg
    print(msg)


@pytest.mark.slow
def test_after_a_rome_edit_the_new_answer_comes_from_the_edited_layer(handle, corpus_path):
    """Before: restoring MLPs cannot bring back 'Rome' (the model never said it). After ROME writes
    it at layer L, the subject's last token's MLP windows containing L carry P(Rome)."""
    session = EditSession(handle, corpus=corpus_path)
    fact = Fact("Eiffel Tower", EIFFEL[0], "Rome", "Paris")
    record, report = session.edit_and_compare(fact, "rome", {"mom2_n_tokens": TEST_MOM2_TOKENS})
    try:
        layer = record.hparams["layer"]
        kw = dict(answer="Rome", kinds="mlp", tokens="subject_last", samples=5, cache=False)
        before = trace(handle, *EIFFEL, state_key=handle.fingerprint, **kw)
        after = trace_session(session, *EIFFEL, **kw)
        eff = after.subject_last_effect("mlp")
        msg = (
            f"edited layer {layer}; P(Rome) clean before {before.p_clean:.3f}, after {after.p_clean:.3f} "
            f"(corrupted {after.p_corrupted:.3f}); after, MLP IE at {after.tokens[after.subject_last]!r}: "
            + " ".join(f"{v:+.2f}" for v in eff)
        )
        assert session.state_key() != handle.fingerprint and after.state_key == session.state_key()
        assert after.p_clean > 0.5 > before.p_clean, msg
        assert layer in window_layers(after.peak_layer("mlp"), after.n_layers, after.window), msg
        assert eff.max() > 0.5 * (after.p_clean - after.p_corrupted), msg
        assert np.abs(before.subject_last_effect("mlp")).max() < 0.05, msg
        # The ablation rows are measured in every column of the edit's report.
        rows = report.rows_of("ablation")
        assert {r.probe.rule for r in rows} == {"original", "negated", "predicate-removed"}
        assert all(r.unedited and r.before and r.after for r in rows)
        assert report.summary("after")["ablation_prefers_new"]["original"] is True, msg
        print(msg, report.summary("after")["ablation_prefers_new"], sep="\n")
    finally:
        session.reset()


def test_cli_trace_json_and_text(capsys):
    from editlab.cli import main

    args = [
        "trace",
        "--prompt",
        "The Louvre is located in the city of",
        "--subject",
        "Louvre",
        "--kind",
        "residual",
        "--tokens",
        "subject_last",
        "--samples",
        "1",
        "--no-cache",
    ]
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == " Paris" and out["tokens"][out["subject_last"]] == "vre"
    assert list(out["scores"]) == ["residual"] and len(out["indirect_effect"]["residual"]) == len(out["tokens"])
    assert out["indirect_effect"]["residual"][-1] == [None] * out["n_layers"]  # not traced: null, valid JSON
    assert out["p_corrupted"] < 0.2 * out["p_clean"], out
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "at the subject's last token 'vre': peak layer" in text and "P(answer) clean" in text

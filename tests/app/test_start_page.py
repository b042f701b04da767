"""The start page: the resident model, the model box, a failed load that keeps the previous model."""

from editlab_app import state as S

from .conftest import open_app, texts


def test_start_page_shows_the_resident_default_model(app_env):
    at = open_app()
    assert at.text_input(key="model_name").value == "smollm2-135m-instruct"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "135 M"
    assert metrics["Device"] == "cpu"
    assert metrics["Weights in memory"].endswith("MiB")
    assert any("llama, 30 layers" in c for c in texts(at.caption))
    page = " ".join(texts(at.markdown))
    assert "survives negation" in page and "fact-check disagrees" in page.lower()
    # CPU only here: no device / dtype / quantisation pickers
    assert not [s for s in at.selectbox if s.label in ("Device", "Dtype", "Quantisation")]


def test_a_model_that_cannot_load_keeps_the_previous_one(app_env, tmp_path):
    at = open_app()
    session = at.session_state[S.SESSION]
    at.text_input(key="model_name").input(str(tmp_path / "no-such-model"))
    at.button[0].click().run()
    assert not at.exception
    [error] = at.error
    assert "Could not load" in error.value and "still loaded" in error.value
    assert at.session_state[S.SESSION] is session
    assert at.session_state[S.MODEL_KEY].name == "smollm2-135m-instruct"
    assert {m.label: m.value for m in at.metric}["Parameters"] == "135 M"


def test_remote_code_is_the_operators_choice_not_the_visitors(app_env, monkeypatch):
    """No widget offers remote code; the operator's EDITLAB_TRUST_REMOTE_CODE reaches the loader."""
    seen = []

    def fake_load(name, **kw):
        seen.append(kw["trust_remote_code"])
        raise ValueError("not reachable in this test")

    at = open_app()
    labels = [
        w.label.lower()
        for kind in ("checkbox", "toggle", "selectbox", "text_input", "radio")
        for w in getattr(at, kind)
    ]
    assert not [label for label in labels if "remote" in label or "trust" in label]
    monkeypatch.setattr(S, "load_model", fake_load)
    for env in ("0", "1"):
        monkeypatch.setenv("EDITLAB_TRUST_REMOTE_CODE", env)
        at.text_input(key="model_name").input(f"someone/model-{env}")
        at.button[0].click().run()
        assert "still loaded" in at.error[0].value
    assert seen == [False, True]


def test_the_operator_can_fix_the_model(app_env):
    app_env.setenv("EDITLAB_ALLOW_MODEL_CHANGE", "0")
    at = open_app()
    assert at.text_input(key="model_name").disabled
    assert at.button[0].disabled

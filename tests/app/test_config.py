import pytest

from editlab_app.config import AppConfig


def test_defaults_are_safe_for_a_public_space():
    cfg = AppConfig.load(environ={}, secrets={})
    assert cfg.default_model == "smollm2-135m-instruct"
    assert cfg.trust_remote_code is False
    assert cfg.allow_model_change is True
    assert cfg.corpus is None and cfg.mom2_tokens is None and cfg.online is True
    assert cfg.hparam_defaults() == {}


def test_environment_wins_over_secrets():
    cfg = AppConfig.load(
        environ={"EDITLAB_MODEL": "Qwen/Qwen2.5-0.5B-Instruct", "EDITLAB_MOM2_TOKENS": "20_000"},
        secrets={"EDITLAB_MODEL": "gpt2", "EDITLAB_TRUST_REMOTE_CODE": "true", "EDITLAB_CORPUS": "/data/wiki.txt"},
    )
    assert cfg.default_model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert cfg.trust_remote_code is True  # only from the operator's configuration
    assert cfg.corpus == "/data/wiki.txt"
    assert cfg.hparam_defaults() == {"mom2_n_tokens": 20000}


@pytest.mark.parametrize(
    "env, message",
    [
        ({"EDITLAB_TRUST_REMOTE_CODE": "maybe"}, "EDITLAB_TRUST_REMOTE_CODE"),
        ({"EDITLAB_MOM2_TOKENS": "lots"}, "expected a number"),
        ({"EDITLAB_MOM2_TOKENS": "-5"}, "positive"),
    ],
)
def test_bad_settings_are_named(env, message):
    with pytest.raises(ValueError, match=message):
        AppConfig.load(environ=env, secrets={})


def test_a_space_refuses_model_paths_on_the_server(tmp_path):
    """On a Hugging Face Space (SPACE_ID set) the model box takes Hub ids, never a server folder;
    elsewhere folders are allowed unless the operator says EDITLAB_ALLOW_LOCAL_PATHS=0."""
    from editlab_app.state import ModelKey, looks_like_path, switch_model

    assert AppConfig.load({"SPACE_ID": "someone/editlab"}, {}).allow_local_paths is False
    assert AppConfig.load({}, {}).allow_local_paths is True
    assert AppConfig.load({"SPACE_ID": "x/y", "EDITLAB_ALLOW_LOCAL_PATHS": "1"}, {}).allow_local_paths is True
    assert looks_like_path("/etc") and looks_like_path("./models/x") and looks_like_path(str(tmp_path))
    assert not looks_like_path("Qwen/Qwen2.5-0.5B-Instruct") and not looks_like_path("gpt2-xl")
    cfg = AppConfig.load({"SPACE_ID": "someone/editlab"}, {})
    state = {}
    with pytest.raises(ValueError, match="not from folders on the server"):
        switch_model(state, ModelKey(str(tmp_path), None, None, None), cfg)
    assert state == {}  # nothing loaded, nothing changed

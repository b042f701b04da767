import pytest

from ui.config import AppConfig


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


@pytest.mark.parametrize("env, message", [
    ({"EDITLAB_TRUST_REMOTE_CODE": "maybe"}, "EDITLAB_TRUST_REMOTE_CODE"),
    ({"EDITLAB_MOM2_TOKENS": "lots"}, "expected a number"),
    ({"EDITLAB_MOM2_TOKENS": "-5"}, "positive"),
])
def test_bad_settings_are_named(env, message):
    with pytest.raises(ValueError, match=message):
        AppConfig.load(environ=env, secrets={})

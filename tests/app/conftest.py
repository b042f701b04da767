"""Fixtures for the Streamlit app's tests: AppTest on editlab_app/app.py with the test corpus configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TEST_MOM2_TOKENS

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "editlab_app" / "app.py"
# A real model runs under every page; the shared CPU can be slow, so runs get a generous limit.
TIMEOUT = 900
OPERATOR_VARS = (
    "EDITLAB_MODEL",
    "EDITLAB_ALLOW_MODEL_CHANGE",
    "EDITLAB_TRUST_REMOTE_CODE",
    "EDITLAB_DEVICE",
    "EDITLAB_DTYPE",
    "EDITLAB_QUANTIZATION",
    "EDITLAB_CORPUS",
    "EDITLAB_MOM2_TOKENS",
    "EDITLAB_OFFLINE",
    "EDITLAB_MAX_UPLOAD_MB",
    "EDITLAB_OPERATOR_KEY",
)


OPERATOR_KEY = "test-operator-key"


@pytest.fixture
def app_env(monkeypatch, corpus_path):
    """The operator's settings the tests run under: the shared WikiText file, few tokens."""
    for name in OPERATOR_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EDITLAB_CORPUS", corpus_path)
    monkeypatch.setenv("EDITLAB_MOM2_TOKENS", str(TEST_MOM2_TOKENS))
    monkeypatch.setenv("EDITLAB_OFFLINE", "1")
    monkeypatch.setenv("EDITLAB_OPERATOR_KEY", OPERATOR_KEY)  # configured; a visitor without it sees only their runs
    return monkeypatch


def open_app(page: str | None = None, operator: bool = False):
    """A fresh browser session (AppTest) on app.py, switched to ``page`` if given; ``operator``:
    opened as the operator (``?operator=<EDITLAB_OPERATOR_KEY>``), who sees every visitor's runs."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if operator:
        at.query_params["operator"] = OPERATOR_KEY
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]

"""serve.py: the app with the default model loaded while the server starts.

The in-process test checks that the model the server loads is the very cache entry the pages use
(a page after it must not load again); the subprocess test runs ``streamlit run serve.py`` with the
real default model and checks the model is resident before the server answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]


def test_streamlit_finds_the_app_in_serve_py():
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(ROOT / "serve.py")
    assert found.is_asgi_app and found.app_name == "app"


def test_warm_default_fills_the_cache_the_pages_read(monkeypatch):
    from editlab_app import state
    from editlab_app.config import AppConfig

    env = {"EDITLAB_OFFLINE": "1"}
    state._resident_model.clear()
    try:
        line = state.warm_default(env)
        assert "smollm2-135m-instruct" in line and "resident in" in line
        config = AppConfig.load(env, secrets={})
        warmed = state.resident_model(state.default_key(config), config)

        def no_second_load(*a, **k):
            raise AssertionError("the page loaded the model again: the server warmed another cache entry")

        monkeypatch.setattr(state, "load_model", no_second_load)
        page_state: dict = {}
        session = state.switch_model(page_state, state.default_key(config), config)  # what the Model page does
        assert session.handle is warmed
    finally:
        state._resident_model.clear()


@pytest.mark.slow
def test_streamlit_run_serve_py_loads_the_model_before_it_answers(tmp_path):
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDITLAB_") or k == "EDITLAB_CACHE_DIR"}
    env.update(EDITLAB_OFFLINE="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "serve.py"),
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                        if r.read().decode().strip() == "ok":
                            break
                except OSError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
            said = log_path.read_text()
            assert "smollm2-135m-instruct resident in" in said, said  # loaded before the first answer
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
                assert r.status == 200
        finally:
            stop_process(proc)

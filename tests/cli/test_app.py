"""``editlab app``: the installed app starts from the command line and answers its health check."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from editlab.cli.app import app_command

from ..conftest import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]


def test_the_command_runs_the_installed_apps_serve_script():
    cmd = app_command(port=8600, address="127.0.0.1")
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert cmd[4].endswith(os.path.join("editlab_app", "serve.py")) and os.path.exists(cmd[4])
    assert app_command(warm=False)[4].endswith(os.path.join("editlab_app", "app.py"))
    with pytest.raises(ValueError, match="between 1 and 65535"):
        app_command(port=70000)


@pytest.mark.slow
def test_editlab_app_serves_the_app(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDITLAB_") or k == "EDITLAB_CACHE_DIR"}
    env.update(EDITLAB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "editlab",
            "app",
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
            "--",
            "--server.headless",
            "true",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )  # the app finds its files itself
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                    assert r.read().decode().strip() == "ok"
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                assert time.monotonic() < deadline, "editlab app did not answer within 180 s"
                time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        stop_process(proc)

"""End to end in a real browser: `streamlit run app.py` on localhost with the real default model,
driven by Playwright's Python package in Debian's chromium.

One browser session types a fact, picks ROME, edits, reads the side-by-side table, and undoes the
edit; a second session on the same server probes the same fact while the first one's edit runs
and must see the unedited model. Screenshots go to artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TEST_MOM2_TOKENS, free_port, stop_process

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
VIEWPORT = {"width": 1400, "height": 2600}  # tall: the app scrolls inside its own pane
STEP_MS = 15 * 60 * 1000  # one edit or probe run on a busy shared CPU can take minutes
FACT = {
    "Subject": "Eiffel Tower",
    "Prompt": "The Eiffel Tower is located in the city of",
    "New target": "Rome",
    "True target": "Paris",
    "Paraphrases": "Tourists who climb the Eiffel Tower are in the city of",
    "Neighbour prompts": "The Brandenburg Gate is located in the city of => Berlin",
}


def chromium_path() -> str:
    path = os.environ.get("EDITLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.skip(
            "Debian chromium is not installed (apt-get install chromium; `bash scripts/setup.sh --dev` does it)"
        )
    return path


@pytest.fixture(scope="module")
def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright's Python package is not installed (pip install -r requirements-dev.txt)")
    return sync_playwright


@pytest.fixture(scope="module")
def app_url(corpus_path):
    """`streamlit run app.py` on a free localhost port, with the test corpus configured."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "streamlit-browser-test.log", "w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDITLAB_") or k == "EDITLAB_CACHE_DIR"}
    env.update(EDITLAB_CORPUS=corpus_path, EDITLAB_MOM2_TOKENS=str(TEST_MOM2_TOKENS), EDITLAB_OFFLINE="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
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
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start; see {ARTIFACTS / 'streamlit-browser-test.log'}")
            time.sleep(1)
        yield url
    finally:
        stop_process(proc)
        log.close()


TABLE_JS = """el => {
  const t = el.querySelector('table');
  const headRows = [...t.querySelectorAll('thead tr')];
  const head = [...headRows[headRows.length - 1].children].map(c => c.innerText.trim());
  const rows = [...t.querySelectorAll('tbody tr')].map(tr => [...tr.children].map(c => c.innerText.trim()));
  return {head, rows};
}"""


def read_table(page, column: str) -> dict[str, dict[str, str]]:
    """The st.table whose header has ``column``, as {row label: {column: cell text}}."""
    table = page.locator('[data-testid="stTable"]').filter(has_text=column).first
    table.wait_for(state="visible", timeout=STEP_MS)
    data = table.evaluate(TABLE_JS)
    head = data["head"]
    out = {}
    for cells in data["rows"]:
        # the first cell is the index (probe label); headers may or may not carry the index name
        names = head if len(head) == len(cells) else [""] + head
        out[cells[0]] = dict(zip(names[1:], cells[1:]))
    return out


def settle(page) -> None:
    """Wait until the script run has finished (Streamlit's running indicator is gone)."""
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=STEP_MS)


def screenshot(page, name: str) -> None:
    settle(page)
    charts = page.locator(".js-plotly-plot .main-svg")
    if charts.count():
        charts.first.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1000)  # let the charts finish drawing
    page.screenshot(path=str(ARTIFACTS / name))


def type_fact(page) -> None:
    page.get_by_label("Subject", exact=True).wait_for(state="visible", timeout=STEP_MS)
    for label, value in FACT.items():
        box = page.get_by_label(label, exact=True)
        box.fill(value)


def test_edit_undo_and_a_concurrent_session_in_chromium(app_url, sync_playwright):
    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            a = browser.new_context(viewport=VIEWPORT).new_page()
            b = browser.new_context(viewport=VIEWPORT).new_page()
            for page in (a, b):
                page.set_default_timeout(STEP_MS)
                page.goto(app_url + "/edit")

            # Session A types the fact, picks ROME and edits; while A's edit runs, session B (same
            # server, same resident model) probes the same fact: B waits for the model and must
            # measure the unedited model, with A's edit in A's session only.
            type_fact(a)
            type_fact(b)
            a.get_by_role("button", name="Edit with rome").click()
            a.get_by_text("Editing with rome").first.wait_for(state="visible", timeout=STEP_MS)
            b.get_by_role("button", name="Probe only").click()

            after = read_table(a, "P(new) after")
            pos = after["positive"]
            assert float(pos["P(new) after"]) > float(pos["P(true) after"]), pos
            assert float(pos["P(new) unedited"]) < float(pos["P(true) unedited"]), pos
            assert after["negation"]["prompt"] == "The Eiffel Tower is not located in the city of"
            flags = a.get_by_text("flags (after):").inner_text()
            assert "positive_prefers_new=True" in flags
            screenshot(a, "browser-edit.png")

            now_b = read_table(b, "P(new) now")["positive"]
            assert now_b["P(new) now"] == pos["P(new) unedited"] != pos["P(new) after"]
            assert now_b["P(true) now"] == pos["P(true) unedited"]
            screenshot(b, "browser-other-session.png")

            # Session A: undo; the table returns to the before values.
            a.get_by_role("button", name="Undo this edit").click()
            back = read_table(a, "P(new) now")["positive"]
            assert back["P(new) now"] == pos["P(new) before"]
            assert back["P(true) now"] == pos["P(true) before"]
            assert a.get_by_text("Undid edit").count() == 1
            screenshot(a, "browser-undo.png")
        finally:
            browser.close()

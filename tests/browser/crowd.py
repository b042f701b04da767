"""Several visitors pressing Edit together on one app server, each in its own browser context
(Playwright + Debian chromium): used by the load test (tests/browser/test_crowd.py) and by
benchmarks/visitors.py, which prints the figures docs/reliability.md shows.

Each visitor opens the Edit page, types its own fact and presses "Edit with rome"; all press
within a fraction of a second. One thread of Playwright then watches every page in turn, every
``POLL_S`` seconds, and records for each visitor: when it first saw its place in the line, every
estimate it was shown ("about N s until your turn") with when, when its turn came (the line's
message gave way to the edit's progress), when its report was on screen, whose fact the report
is about, and any error shown. When the first verdict appeared is taken by the page itself (a
mutation observer installed before the app loads records the moment a "First verdict" heading is
added), so a verdict on screen for less than a poll is not missed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 2.0  # every page is read this often; more often, chromium's work competes with the server's
ETA_RE = re.compile(r"about (\d+) s until your turn")
PLACE_RE = re.compile(r"In line: (\d+)")
VERDICT_RE = re.compile(r"First verdict, ([\d.]+) s after Edit")
EDITED_RE = re.compile(r"Edited with \w+ in ([\d.]+) s")


@dataclass
class Visit:
    """What one visitor saw, in seconds after it pressed Edit."""

    name: str
    fact: object
    pressed: float = 0.0
    places: list[int] = field(default_factory=list)
    estimates: list[tuple[float, int]] = field(default_factory=list)  # (when shown, seconds estimated)
    queued_at: float | None = None  # first saw its place in the line
    turn_at: float | None = None  # the line's message gone: its request holds the model (None: never waited)
    report_at: float | None = None
    verdict_at: float | None = None  # the first verdict on screen (the page's own clock)
    verdict_server: float | None = None  # the same verdict as the server timed it ("… s after Edit")
    edit_server: float | None = None  # the edit alone, as the server timed it ("Edited with rome in … s")
    report_title: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def latency(self) -> float | None:
        return self.report_at

    def estimate_errors(self) -> list[float]:
        """For the first estimate shown: (estimated wait − actual wait from then) / actual wait."""
        if self.turn_at is None:
            return []
        out = []
        for when, est in self.estimates[:1]:
            actual = self.turn_at - when
            if actual > 1.0:  # a second from the turn, the rounding of "about N s" dominates
                out.append((est - actual) / actual)
        return out


class Server:
    """``streamlit run SCRIPT`` on a free local port, headless; ``env`` adds variables."""

    def __init__(self, script: str = "serve.py", env: dict | None = None):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("EDITLAB_") or k == "EDITLAB_CACHE_DIR"}
        base.update(EDITLAB_OFFLINE="1", **(env or {}))
        self.log_path = Path(tempfile.mkstemp(suffix=".log", prefix="editlab-crowd-")[1])
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / script),
                "--server.port",
                str(self.port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=base,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=5) as r:
                    if r.read().decode().strip() == "ok":
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the app did not start (log: {self.log_path})")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# Installed in every page before the app's own scripts: the first moment a "First verdict" heading
# is added to the page, on the page's clock (performance.now(), milliseconds).
VERDICT_OBSERVER = """
window.__editlab = {verdict: null, text: null};
new MutationObserver((records) => {
  if (window.__editlab.verdict !== null) return;
  for (const r of records) for (const n of r.addedNodes) {
    if (n.textContent && n.textContent.includes("First verdict")) {
      window.__editlab.verdict = performance.now();
      window.__editlab.text = n.textContent;
      return;
    }
  }
}).observe(document, {childList: true, subtree: true});
"""


def chromium() -> str | None:
    path = os.environ.get("EDITLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).exists() else None


def _fill(page, fact) -> None:
    page.get_by_label("Subject", exact=True).wait_for(state="visible")
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
    for label, value in (
        ("Subject", fact.subject),
        ("Prompt", fact.prompt),
        ("New target", fact.target_new),
        ("True target", fact.target_true or ""),
        ("Paraphrases", "\n".join(fact.paraphrases)),
        ("Neighbour prompts", "\n".join(f"{n.prompt} => {n.answer}" for n in fact.neighbors)),
    ):
        page.get_by_label(label, exact=True).fill(value)


def _look(page, visit: Visit, now: float) -> bool:
    """Update ``visit`` from what its page shows now; True once its report is on screen."""
    text = page.locator('[data-testid="stMain"]').inner_text(timeout=60_000)
    place = PLACE_RE.search(text)
    if place:
        visit.places.append(int(place.group(1)))
        if visit.queued_at is None:
            visit.queued_at = now
        eta = ETA_RE.search(text)
        if eta:
            visit.estimates.append((now, int(eta.group(1))))
    elif visit.queued_at is not None and visit.turn_at is None:  # the line's message gave way: its turn
        visit.turn_at = now
    for alert in page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').all():
        message = alert.inner_text()
        if message not in visit.errors:
            visit.errors.append(message)
    title = page.get_by_text(re.compile(r"^rome: ")).first
    if title.count() and page.locator('[data-testid="stTable"]').count():
        visit.report_title = title.inner_text()
        if visit.queued_at is not None and visit.turn_at is None:
            visit.turn_at = now
        return True
    return False


def visit_together(url: str, facts, playwright, timeout_s: float = 900) -> list[Visit]:
    """One visitor per fact, each in its own browser context, pressing Edit (ROME) together; returns
    what each saw (see the module docstring). Raises TimeoutError past ``timeout_s``."""
    browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"])
    try:
        pages, visits = [], []
        for i, fact in enumerate(facts):
            context = browser.new_context(viewport={"width": 1400, "height": 2400})
            context.add_init_script(VERDICT_OBSERVER)
            page = context.new_page()
            page.set_default_timeout(15 * 60 * 1000)
            page.goto(url + "/edit")
            _fill(page, fact)
            pages.append(page)
            visits.append(Visit(f"visitor {i + 1}", fact))
        t0 = time.perf_counter()
        clicked = []  # each page's clock when its Edit was pressed
        for page, visit in zip(pages, visits):
            clicked.append(page.evaluate("performance.now()"))
            page.get_by_role("button", name="Edit with rome").click()
            visit.pressed = time.perf_counter() - t0
        done: set[int] = set()
        while len(done) < len(pages):
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"{len(pages) - len(done)} visitor(s) had no report after {timeout_s:.0f} s")
            for i, (page, visit) in enumerate(zip(pages, visits)):
                if i not in done and _look(page, visit, time.perf_counter() - t0 - visit.pressed):
                    visit.report_at = time.perf_counter() - t0 - visit.pressed
                    done.add(i)
            time.sleep(POLL_S)
        for page, visit, at in zip(pages, visits, clicked):
            seen = page.evaluate("window.__editlab")
            visit.verdict_at = (seen["verdict"] - at) / 1000 if seen["verdict"] is not None else None
            server = VERDICT_RE.search(seen["text"] or "")
            visit.verdict_server = float(server.group(1)) if server else None
            edited = EDITED_RE.search(page.locator('[data-testid="stMain"]').inner_text())
            visit.edit_server = float(edited.group(1)) if edited else None
        return visits
    finally:
        browser.close()

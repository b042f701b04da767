"""Three visitors press Edit together on one `streamlit run serve.py` (the real default model, real
chromium): each gets its own report, about its own fact; each sees the first verdict before the
full report; the ones that wait see their place in the line, and an estimate once an edit has been
timed; nothing errors."""

from __future__ import annotations

import pytest

from tests.conftest import COUNTERFACT, TEST_MOM2_TOKENS, WIKITEXT, need_shared

from .crowd import Server, chromium, visit_together

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server():
    need_shared(WIKITEXT)
    app = Server("serve.py", env={"EDITLAB_CORPUS": str(WIKITEXT), "EDITLAB_MOM2_TOKENS": str(TEST_MOM2_TOKENS)})
    try:
        app.wait_healthy()
        yield app
    finally:
        app.close()


def test_three_visitors_pressing_edit_together_each_get_their_own_report_and_see_the_line(server):
    if chromium() is None:
        pytest.skip(
            "Debian chromium is not installed (apt-get install chromium; `bash scripts/setup.sh --dev` does it)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright's Python package is not installed (pip install -r requirements-dev.txt)")
    from editlab.facts.datasets import load_dataset

    facts = list(load_dataset(need_shared(COUNTERFACT)).facts[300:303])
    with sync_playwright() as p:
        visits = visit_together(server.url, facts, p)
    for v in visits:
        assert not v.errors, (v.name, v.errors)
        assert v.report_title.startswith(f"rome: {v.fact.prompt} → {v.fact.target_new}"), (v.name, v.report_title)
        assert v.verdict_at is not None, f"{v.name} never saw a first verdict before its report"
        assert 0 < v.verdict_at <= v.report_at, (v.name, v.verdict_at, v.report_at)  # the verdict streams in first
        # The page's own figure (the server's clock, from its script's start) can only be earlier.
        assert v.verdict_server is not None and v.verdict_server <= v.verdict_at + 0.2, (v.name, v.verdict_server)
        assert v.edit_server is not None and 0 < v.edit_server < v.report_at, (v.name, v.edit_server)
    waited = sorted((v for v in visits if v.queued_at is not None), key=lambda v: v.places[0])
    assert len(waited) >= len(visits) - 1, [(v.name, v.places) for v in visits]  # one held the model, the rest waited
    for v in waited:
        assert v.places == sorted(v.places, reverse=True), (v.name, v.places)  # only ever moved up
        assert v.turn_at is not None and v.turn_at <= v.report_at
    last = waited[-1]
    assert last.places[0] == len(waited), (last.name, last.places)
    assert last.estimates, f"{last.name} waited behind a timed edit but saw no estimate"
    order = sorted(visits, key=lambda v: v.pressed + v.report_at)
    assert [v.name for v in order][1:] == [v.name for v in waited], "reports came out of the line's order"

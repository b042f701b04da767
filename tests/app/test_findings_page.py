"""The Findings page: the published numbers with their sources before anything runs; a small
protocol started from the page shows its measured table, the report and the downloads."""

import pytest

from editlab import methods

from .. import stand_in_method
from .conftest import open_app

FINDINGS = "views/findings.py"


def frame(at, column: str):
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise KeyError(column)


@pytest.fixture
def findings_env(app_env):
    app_env.setitem(methods.REGISTRY, stand_in_method.NAME, stand_in_method.MODULE)
    return app_env


def test_the_page_shows_the_published_numbers_with_their_sources(findings_env):
    at = open_app(FINDINGS)
    assert at.title[0].value.startswith("Findings")
    pub = frame(at, "source")
    row = pub[(pub["metric"] == "PN") & (pub["model"] == "Llama-3-8B-Instruct")].iloc[0]
    assert row["value"] == pytest.approx(0.694) and "Built on Sand" in row["source"]
    assert pub["checked"].str.contains("not checked against the PDF").all()
    assert "No result yet" in " ".join(c.value for c in at.caption)


def test_a_protocol_run_from_the_page_is_shown_with_the_report(findings_env):
    at = open_app(FINDINGS)
    at.selectbox(key="findings_protocol").select("negation")
    at.number_input(key="findings_n").set_value(1)
    at.selectbox(key="findings_method").select(stand_in_method.NAME)
    at.button(key="FormSubmitter:findings_form-Run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    table = frame(at, "95% low")
    assert {"PP: says o* after the positive prompt", "Rectified efficacy PP − PN"} <= set(table["metric"])
    assert len(at.get("download_button")) == 2


def test_a_saved_report_opens_in_the_page_and_a_bad_file_says_what_is_wrong(findings_env):
    """A long run made elsewhere (the JSON `editlab reproduce` writes) is shown without running it."""
    from editlab.runs.reproduce import Estimate, ReproResult, references

    est = tuple(
        Estimate("held-out text", "perplexity", "Perplexity (held-out WikiText)", v, v - 1, v + 1, 32, edits=k)
        for k, v in ((0, 42.3), (1000, 111.0))
    )
    saved = ReproResult(
        "muting",
        "smollm2-135m-instruct",
        "memit",
        1000,
        {"seed": 0, "batch_size": 100},
        est,
        references("muting"),
        {"total_s": 2900.0, "machine": "cuda (NVIDIA H100 80GB HBM3), float32, torch 2.11.0"},
        ("sequential edits, batch size 100",),
    )
    at = open_app(FINDINGS)
    at.file_uploader(key="findings_open").set_value(("muting.json", saved.to_json().encode(), "application/json"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Measured: muting, memit on smollm2-135m-instruct, n=1000" in [h.value for h in at.subheader]
    table = frame(at, "95% low")
    assert set(table["edits"]) == {0, 1000} and 111.0 in set(table["measured"])
    assert any("2900.0 s in all on cuda (NVIDIA H100 80GB HBM3)" in c.value for c in at.caption)  # where it ran
    at.file_uploader(key="findings_open").set_value(("notes.json", b"{broken", "application/json"))
    at.run()
    assert any("notes.json is not JSON" in e.value for e in at.error)


def test_a_report_shipped_with_editlab_opens_without_running(findings_env):
    """editlab_app/data/reports holds real long runs (MEMIT, 1,000 sequential edits on one H100): one click shows it."""
    at = open_app(FINDINGS)
    at.selectbox(key="findings_shipped").select("muting-memit-1000-h100.json")
    at.button(key="findings_open_shipped").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Measured: muting, memit on smollm2-135m-instruct, n=1000" in [h.value for h in at.subheader]
    table = frame(at, "95% low")
    assert {0, 10, 100, 200, 500, 1000} <= set(table["edits"])

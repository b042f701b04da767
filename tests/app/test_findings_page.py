"""The Findings page: the published numbers with their sources before anything runs; a small
protocol started from the page shows its measured table, the report and the downloads."""

import pytest

from editlab import methods

from .. import stand_in_method
from .conftest import open_app

FINDINGS = "views/findings.py"


def frame(at, column: str, last: bool = False):
    """The first table with this column (the last: ``last``; the shipped runs' tables come first)."""
    found = [df.value for df in at.dataframe if column in df.value.columns]
    if not found:
        raise KeyError(column)
    return found[-1] if last else found[0]


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
    table = frame(at, "95% low", last=True)
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
    table = frame(at, "95% low", last=True)
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
    table = frame(at, "95% low", last=True)
    assert {0, 10, 100, 200, 500, 1000} <= set(table["edits"])


def test_the_shipped_runs_are_drawn_when_the_page_opens(findings_env):
    """Before anything runs, the shipped findings are on the page: one tab per protocol (muting
    first), each with its figure and its measured-beside-published table."""
    from editlab_app import bench as B

    shipped = [(n, r) for n, r in B.shipped_results() if not isinstance(r, Exception)]
    assert [r.protocol for _, r in shipped][0] == "muting"
    at = open_app(FINDINGS)
    assert [t.label for t in at.tabs][: len(shipped)] == [r.protocol for _, r in shipped]
    assert len(at.get("plotly_chart")) >= len(shipped)
    text = " ".join(m.value for m in at.markdown)
    assert "1,000 sequential edits" in text and "H100" in text
    muting = next(r for _, r in shipped if r.protocol == "muting")
    tables = [df.value for df in at.dataframe if "95% low" in df.value.columns]
    assert any(
        len(t) == len(muting.estimates) and t["measured"].tolist() == [e.value for e in muting.estimates]
        for t in tables
    )
    assert "Run your own" in [h.value for h in at.subheader]


def test_a_shipped_report_that_cannot_be_read_is_named_not_fatal(findings_env, tmp_path, monkeypatch):
    from editlab_app import bench as B

    (tmp_path / "broken-memit-1-cpu.json").write_text("{not json")
    results = B.shipped_results(tmp_path)
    assert len(results) == 1 and isinstance(results[0][1], ValueError)
    assert "broken-memit-1-cpu.json" in str(results[0][1])

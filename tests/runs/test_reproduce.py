"""Reproducing the papers: bootstrap intervals, the protocols on a tiny model, the report, the CLI.

Protocol tests run the stand-in ``shift`` method (tests/stand_in_method.py) on a tiny random model
that shares the real tokenizer, so they exercise the plumbing in seconds, not the papers' numbers.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from editlab.runs.findings import to_html, write_report
from editlab.runs.reproduce import (
    PUBLISHED,
    SECONDARY,
    Estimate,
    ReproResult,
    bootstrap_ci,
    log_checkpoints,
    references,
    run,
)
from tests.conftest import COUNTERFACT, SHARED, need_shared, tiny_handle

SHIFT_HP = {"layer": 1}  # the tiny models have 4 layers


@pytest.fixture(scope="module")
def tiny(handle):
    return tiny_handle("llama", handle.tokenizer)


# ---- bootstrap --------------------------------------------------------------------------------------
def test_bootstrap_of_constant_data_is_a_point():
    assert bootstrap_ci([1.0] * 20) == (1.0, 1.0, 1.0)
    assert bootstrap_ci([0.3]) == (0.3, 0.3, 0.3)
    assert bootstrap_ci([None, None]) == (None, None, None)


def test_bootstrap_of_a_proportion_matches_the_normal_interval():
    # 60 of 100 facts: the percentile interval of a mean ≈ p ± 1.96·sqrt(p(1−p)/n) = 0.60 ± 0.096
    v, lo, hi = bootstrap_ci([1.0] * 60 + [0.0] * 40, seed=1)
    assert v == pytest.approx(0.60)
    assert lo == pytest.approx(0.504, abs=0.02) and hi == pytest.approx(0.696, abs=0.02)


def test_bootstrap_is_seeded_and_ignores_missing_values():
    data = [0.1, 0.5, 0.9, None, 0.4, 0.7]
    assert bootstrap_ci(data, seed=3) == bootstrap_ci(data, seed=3)
    assert bootstrap_ci(data, seed=3) != bootstrap_ci(data, seed=4)
    assert bootstrap_ci(data)[0] == pytest.approx(np.mean([0.1, 0.5, 0.9, 0.4, 0.7]))


def test_bootstrap_of_a_ratio_resamples_rows():
    # perplexity-like: exp(Σ nll / Σ tokens) over (nll, tokens) rows
    rows = [(2.0, 1), (4.0, 1), (6.0, 2)]
    v, lo, hi = bootstrap_ci(rows, lambda a: float(np.exp(a[:, 0].sum() / a[:, 1].sum())))
    assert v == pytest.approx(np.exp(3.0))
    assert np.exp(2.0) - 1e-9 <= lo <= v <= hi <= np.exp(4.0) + 1e-9


def test_a_task_whose_interval_reaches_chance_is_said_to_be_at_chance():
    at = Estimate("ability", "mmlu", "MMLU accuracy", 0.3, 0.1, 0.5, 20, edits=0, chance=0.25)
    above = Estimate("ability", "mmlu", "MMLU accuracy", 0.6, 0.5, 0.7, 20, edits=0, chance=0.25)
    assert at.at_chance and not above.at_chance
    r = ReproResult("muting", "m", "rome", 1, {}, (at,), (), {"total_s": 1.0})
    [sentence] = r.at_chance_sentences()
    assert "MMLU accuracy (ability) is at chance for this model" in sentence


def test_log_checkpoints():
    assert log_checkpoints(1) == (0, 1)
    assert log_checkpoints(10) == (0, 1, 2, 5, 10)
    assert log_checkpoints(1000) == (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    assert log_checkpoints(30) == (0, 1, 2, 5, 10, 20, 30)


# ---- published values -----------------------------------------------------------------------------------
def test_the_issue_values_are_in_the_table_with_their_source():
    def value(protocol, metric, model, edits=None):
        [r] = [r for r in PUBLISHED if (r.protocol, r.metric, r.model, r.edits) == (protocol, metric, model, edits)]
        return r

    assert value("negation", "PP", "Llama-3-8B-Instruct").value == 0.982
    assert value("negation", "RE", "Llama-3-8B-Instruct").value == 0.288
    assert [value("negation", k, "Qwen2.5-7B-Instruct").value for k in ("PP", "PN", "NN", "NP")] == [
        0.934,
        0.722,
        0.849,
        0.744,
    ]
    assert value("factcheck", "FC_abs", "Qwen2.5-7B-Instruct").value == 0.488
    assert [value("muting", "mmlu", "Llama-2-7B", e).value for e in (0, 50, 100)] == [0.459, 0.270, 0.0]
    # nothing here was checked against the PDF, and every entry says so
    assert all(not r.checked and r.provenance == SECONDARY and r.paper and r.where for r in PUBLISHED)


def test_published_numbers_sit_only_beside_edited_rows_of_their_dataset():
    from editlab.runs.reproduce import applies

    def est(group, key, edits=None):
        return Estimate(group, key, key, 0.5, 0.4, 0.6, 20, edits=edits)

    pp = next(r for r in PUBLISHED if r.protocol == "negation" and r.metric == "PP")
    fc = next(r for r in PUBLISHED if r.protocol == "factcheck" and r.metric == "FC_abs")
    mmlu0 = next(r for r in PUBLISHED if r.metric == "mmlu" and r.edits == 0)
    assert applies(pp, est("edited", "PP")) and not applies(pp, est("unedited", "PP"))
    assert not applies(pp, est("edited", "PN"))
    assert applies(fc, est("zsre · edited", "FC_abs")) and not applies(fc, est("counterfact · edited", "FC_abs"))
    assert not applies(fc, est("zsre · unedited", "FC_abs"))
    assert not applies(fc, est("zsre · edited", "FC"))  # the pairwise reading is not the paper's definition
    assert applies(mmlu0, est("ability", "mmlu", edits=0)) and not applies(mmlu0, est("ability", "mmlu", edits=50))
    table = _result().table()
    assert table.loc[table["group"] == "edited", "published"].notna().all()


# ---- protocols on a tiny model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cf_path():
    return need_shared(COUNTERFACT)


def test_negation_protocol_reports_every_setting_with_intervals(tiny, shift, cf_path):
    r = run("negation", tiny, 3, shift, dataset=cf_path, hparams=SHIFT_HP, online=False)
    assert r.n == 3 and r.method == shift
    for key in ("PP", "PN", "NN", "NP", "RE", "FC"):
        e = r.get(key, "edited")
        assert e.n == 3 and e.low <= e.value <= e.high
    pp, pn = r.get("PP", "edited"), r.get("PN", "edited")
    assert r.get("RE", "edited").value == pytest.approx(pp.value - pn.value)
    assert r.cost["total_s"] > 0 and r.cost["seconds_per_edit"] is not None
    assert r.cost["machine"].startswith("cpu (") and "float32" in r.cost["machine"]  # where the seconds were spent
    assert f"on {r.cost['machine']}" in r.to_markdown().splitlines()[0]
    assert {x.metric for x in r.references} == {"PP", "PN", "NN", "NP", "RE"}
    for key in ("PN_contraction", "PN_not_true", "PN_gen", "PN_gen_answer", "PN_gen_neither"):
        assert r.get(key, "edited").n <= 3  # only facts with that negation are scored
    cal = r.config["factcheck_calibration"]  # the report carries how far its fact-check can be read
    assert cal["model"] == tiny.name and "readable" in cal
    if not cal["readable"]:
        assert cal["sentence"] + "." in r.at_chance_sentences()


def test_factcheck_and_ablation_protocols(tiny, shift, cf_path):
    zsre = need_shared(SHARED / "editing" / "zsre-1k.json")
    fc = run("factcheck", tiny, 2, shift, dataset=cf_path, zsre=zsre, hparams=SHIFT_HP, online=False)
    assert fc.cost["machine"].startswith("cpu (")
    assert {e.group for e in fc.estimates} == {
        "counterfact · unedited",
        "counterfact · edited",
        "zsre · unedited",
        "zsre · edited",
    }
    assert fc.get("FC", "zsre · edited").n == 2
    assert fc.get("FC_known", "counterfact · unedited").chance == 0.5  # can the probe read the facts at all?
    assert "factcheck_calibration" in fc.config and fc.get("FC_abs", "zsre · edited").n == 2
    ab = run("ablation", tiny, 2, shift, dataset=cf_path, hparams=SHIFT_HP, online=False)
    assert ab.n == 2
    assert 0.0 <= ab.get("ignores_predicate", "edited").value <= 1.0
    assert ab.get("prefers_new.original", "unedited").n == 2


def test_muting_protocol_measures_every_signal_at_each_checkpoint(tiny, shift, cf_path, tmp_path):
    heldout = tmp_path / "held.txt"
    heldout.write_text(
        "\n\n".join(f"Paragraph {i}. " + "The river runs past the old mill and the town. " * 6 for i in range(12))
    )
    facts = [{"prompt": "The capital of France is", "answer": "Paris"}]
    r = run(
        "muting",
        tiny,
        2,
        shift,
        dataset=cf_path,
        heldout=heldout,
        heldout_count=4,
        retention=facts,
        hparams=SHIFT_HP,
        online=False,
    )
    assert r.config["checkpoints"] == [0, 1, 2]
    for step in (0, 1, 2):
        for key in ("perplexity", "next_token_acc", "empty_rate", "ngram_entropy", "retention"):
            assert r.get(key, edits=step).value is not None
    ppl = r.get("perplexity", edits=0)
    assert ppl.value > 1000 and ppl.low <= ppl.value <= ppl.high  # a random model over a 49k vocabulary
    assert [c["edits"] for c in r.cost["per_checkpoint"]] == [0, 1, 2]
    assert "torch " in r.cost["machine"]
    assert r.get("ES", edits=2).n == 2


def test_the_shipped_simple_facts_are_what_the_unedited_default_model_gets_right(handle):
    """The retention list (benchmarks/simple_facts.py) names the model it was picked on, and that
    model, unedited, still completes every one of its facts: retention starts at 1.0."""
    from editlab.runs.experiments import retained
    from editlab.runs.reproduce import load_simple_facts

    facts, prov = load_simple_facts()
    assert len(facts) == 100 and len({f["prompt"] for f in facts}) == 100
    assert prov["model"] == handle.name and prov["fingerprint"] == handle.fingerprint
    assert "command" in prov and "rule" in prov
    kept = retained(handle.model, handle.tokenizer, facts)
    assert kept == [1.0] * 100, [f["prompt"] for f, k in zip(facts, kept) if not k]


# ---- the report -------------------------------------------------------------------------------------------
def _result():
    est = (
        Estimate("edited", "PP", "PP", 1.0, 1.0, 1.0, 10),
        Estimate("edited", "PN", "PN", 0.9, 0.7, 1.0, 10),
        Estimate("edited", "RE", "Rectified efficacy PP − PN", 0.1, 0.0, 0.3, 10),
    )
    return ReproResult(
        "negation",
        "smollm2-135m-instruct",
        "memit",
        10,
        {"seed": 0},
        est,
        references("negation"),
        {"total_s": 12.5, "seconds_per_edit": 0.6, "machine": "cuda (NVIDIA H100 80GB HBM3), float32, torch 2.11.0"},
    )


def test_report_json_and_html_carry_the_published_values_and_sources(tmp_path):
    html_path, json_path = write_report(_result(), tmp_path / "out")
    d = json.loads(json_path.read_text())
    pub = {(p["model"], p["metric"]): p for p in d["published"]}
    assert pub[("Llama-3-8B-Instruct", "PN")]["value"] == 0.694
    assert pub[("Qwen2.5-7B-Instruct", "NP")]["value"] == 0.744
    assert all("Built on Sand" in p["paper"] and p["provenance"] == SECONDARY for p in d["published"])
    assert {e["key"]: (e["low"], e["high"]) for e in d["estimates"]}["PN"] == (0.7, 1.0)
    assert d["cost"]["total_s"] == 12.5
    page = html_path.read_text()
    assert "0.694" in page and "0.982" in page and "Table 3" in page and "Built on Sand" in page
    assert "not checked against the PDF" in page
    assert "Ran on cuda (NVIDIA H100 80GB HBM3), float32, torch 2.11.0." in page  # a GPU run read back says so
    assert "<script" in page and 'src="https://cdn.plot.ly' not in page  # plotly inline: the file stands alone
    assert len(page) > 1_000_000


def test_a_report_reads_back_from_its_json_and_prints_the_readme_table(tmp_path):
    _, json_path = write_report(_result(), tmp_path / "out")
    back = ReproResult.from_dict(json.loads(json_path.read_text()))
    assert back.estimates == _result().estimates and back.references == _result().references
    md = back.to_markdown()
    assert md.startswith("**negation** — memit on smollm2-135m-instruct, n = 10")
    row = next(line for line in md.splitlines() if line.startswith("| edited | PN |"))
    assert "| 0.90 | 0.70–1.00 | 10 |" in row and "0.694 (Llama-3-8B-Instruct, MEMIT, CounterFact)" in row


@pytest.mark.parametrize(
    "text, message",
    [
        (b"\x89PNG\r\n", "is not JSON"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "not a report"),
        ('{"protocol": "negation", "model": "m"}', "it has no method, n, estimates"),
        ('{"protocol": "sweep", "model": "m", "method": "rome", "n": 1, "estimates": []}', "unknown protocol 'sweep'"),
        (
            '{"protocol": "muting", "model": "m", "method": "rome", "n": 1, "estimates": [{"group": "g"}]}',
            "not of the form editlab writes",
        ),
    ],
)
def test_a_file_that_is_not_a_report_is_refused_with_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message) as e:
        ReproResult.from_json(text, "upload.json")
    assert "upload.json" in str(e.value)


def test_a_saved_report_opens_as_the_same_result(tmp_path):
    _, json_path = write_report(_result(), tmp_path / "out")
    back = ReproResult.from_json(json_path.read_bytes())
    assert back.estimates == _result().estimates and back.cost == _result().cost and back.protocol == "negation"


def test_report_of_a_muting_run_draws_a_chance_line_and_says_so():
    est = (
        Estimate("ability", "mmlu", "MMLU accuracy", 0.25, 0.05, 0.45, 20, edits=0, chance=0.25),
        Estimate("ability", "mmlu", "MMLU accuracy", 0.2, 0.05, 0.4, 20, edits=1, chance=0.25),
    )
    r = ReproResult(
        "muting",
        "smollm2-135m-instruct",
        "rome",
        1,
        {"seed": 0},
        est,
        references("muting"),
        {"total_s": 1.0, "per_checkpoint": [{"edits": 0, "edit_s": 0, "measure_s": 1}]},
    )
    page = to_html(r, include_plotlyjs="cdn")
    assert "at chance for this model" in page and "chance" in page and "0.459" in page


# ---- the command line ------------------------------------------------------------------------------------
def test_cli_writes_the_html_and_the_json(tiny, shift, cf_path, tmp_path, monkeypatch, capsys):
    from editlab.cli import main
    from editlab.cli import reproduce as cli

    monkeypatch.setattr(cli, "load", lambda args: tiny)
    out = tmp_path / "report"
    rc = main(
        [
            "reproduce",
            "negation",
            "--n",
            "2",
            "--out",
            str(out),
            "--method",
            shift,
            "--dataset",
            str(cf_path),
            "--set",
            "layer=1",
            "--offline",
        ]
    )
    assert rc == 0
    d = json.loads((out / "negation.json").read_text())
    assert d["n"] == 2 and d["method"] == shift and any(e["key"] == "RE" for e in d["estimates"])
    assert "Table 3" in (out / "negation.html").read_text()
    assert "PP" in capsys.readouterr().out


def test_cli_says_what_is_missing_without_a_dataset(tmp_path, capsys, monkeypatch):
    from editlab.cli import main

    monkeypatch.delenv("EDITLAB_SHARED_DATA", raising=False)
    assert main(["reproduce", "negation", "--n", "2", "--out", str(tmp_path)]) == 2
    assert "no CounterFact file" in capsys.readouterr().err


def test_the_shipped_gpu_report_opens_like_a_run_from_the_page():
    """editlab_app/data/reports holds a real run the README quotes (MEMIT, 1,000 edits, one H100): it must stay
    readable by ReproResult.from_json, the Findings page's "Open a saved report"."""
    path = Path(__file__).resolve().parents[2] / "editlab_app" / "data" / "reports" / "muting-memit-1000-h100.json"
    r = ReproResult.from_json(path.read_text(), source=path.name)
    assert (r.protocol, r.method, r.n) == ("muting", "memit", 1000)
    assert [c["edits"] for c in r.cost["per_checkpoint"]] == [0, 10, 100, 200, 500, 1000]
    assert r.get("perplexity", edits=1000).value > 2 * r.get("perplexity", edits=0).value  # the collapse it shows
    assert "| Simple facts still right |" in r.to_markdown()


def test_the_shipped_negation_and_factcheck_reports_carry_the_new_probes_and_their_calibration():
    """The README's reproduced negation and fact-check tables come from these reports."""
    folder = Path(__file__).resolve().parents[2] / "editlab_app" / "data" / "reports"
    neg = ReproResult.from_json((folder / "negation-memit-20-cpu.json").read_text(), source="negation")
    assert neg.get("PN_contraction", "edited").n >= 1 and neg.get("PN_gen_neither", "unedited").n == 20
    assert neg.config["factcheck_calibration"]["form"] == "chat_fewshot"
    assert "Fact-check calibration:" in neg.to_markdown()
    fc = ReproResult.from_json((folder / "factcheck-memit-20-cpu.json").read_text(), source="factcheck")
    assert fc.get("FC_known", "counterfact · unedited").at_chance  # the probe cannot read these facts
    assert any(s.startswith("Fact-check reads the fact") for s in fc.at_chance_sentences())

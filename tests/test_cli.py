import json

import pytest

from editlab.cli import main
from tests.conftest import TEST_MOM2_TOKENS

FACT = [
    "--subject",
    "Danielle Darrieux",
    "--prompt",
    "The mother tongue of Danielle Darrieux is",
    "--target-new",
    "English",
    "--target-true",
    "French",
    "--paraphrase",
    "Where Danielle Darrieux is from, people speak the language of",
    "--neighbor",
    "Michel Rocard is a native speaker of=>French",
    "--generation-tokens",
    "12",
]
FIELDS = {"p_new", "p_true", "top1_is_new", "top1_is_true", "greedy"}


@pytest.mark.slow
def test_edit_json_has_every_column_for_every_probe(capsys, corpus_path, handle):
    code = main(
        [
            "edit",
            *FACT,
            "--method",
            "rome",
            "--corpus",
            corpus_path,
            "--set",
            f"mom2_n_tokens={TEST_MOM2_TOKENS}",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"model", "method", "fact", "edit_seconds", "probes"} <= set(out)
    assert out["method"] == "rome" and out["edit_seconds"] > 0 and out["fact"]["target_new"] == "English"
    kinds = {p["kind"] for p in out["probes"]}
    assert {"positive", "negation", "true_false", "paraphrase", "neighborhood", "generation"} <= kinds
    for p in out["probes"]:
        for col in ("unedited", "before", "after"):
            assert FIELDS <= set(p[col]), (p["kind"], col)
    pos = next(p for p in out["probes"] if p["kind"] == "positive")
    assert pos["after"]["p_new"] > pos["after"]["p_true"]
    neg = next(p for p in out["probes"] if p["kind"] == "negation")
    assert neg["prompt"].endswith("is not") and neg["after"]["p_new"] is not None
    tf = [p for p in out["probes"] if p["kind"] == "true_false"]
    assert all(p[c]["p_yes"] is not None for p in tf for c in ("unedited", "before", "after"))
    cal = out["factcheck_calibration"]  # the report says how far its True/False probe can be read
    assert cal["form"] == "chat_fewshot" and cal["known"] > 0 and "sentence" in cal


def test_probe_prints_a_side_by_side_table(capsys, handle):
    assert main(["probe", *FACT]) == 0
    out = capsys.readouterr().out
    assert "neg[not]" in out and "neg[contraction]" in out and "true_false[new]" in out and "unedited" in out
    assert "fact-check calibration: the fact-check probe" in out
    assert "after the negated prompt the first clause names:" in out


def test_probe_takes_the_users_negated_prompt(capsys, handle):
    assert (
        main(
            [
                "probe",
                "--subject",
                "Toko Yasuda",
                "--prompt",
                "Toko Yasuda's instrument:",
                "--target-new",
                "guitar",
                "--target-true",
                "piano",
                "--generation-tokens",
                "4",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert not [p for p in out["probes"] if p["kind"] == "negation"]
    assert any(n.startswith("no negation probe: unnegatable") for n in out["notes"])
    assert (
        main(
            [
                "probe",
                "--subject",
                "Toko Yasuda",
                "--prompt",
                "Toko Yasuda's instrument:",
                "--target-new",
                "guitar",
                "--target-true",
                "piano",
                "--generation-tokens",
                "4",
                "--json",
                "--negated-prompt",
                "Toko Yasuda's instrument is not",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert [(p["prompt"], p["rule"]) for p in out["probes"] if p["kind"] == "negation"] == [
        ("Toko Yasuda's instrument is not", "not: given")
    ]


def test_bad_input_is_one_clear_line(capsys):
    code = main(["probe", "--subject", "Rome", "--prompt", "The Eiffel Tower is in", "--target-new", "Rome"])
    err = capsys.readouterr().err
    assert code == 2 and "Fact.subject 'Rome' does not occur in Fact.prompt" in err and "Traceback" not in err


def test_negation_weight_flag_sets_the_objective_or_names_the_methods_that_have_it(capsys, handle):
    import argparse

    from editlab.cli.edit import hparams_from_args

    args = argparse.Namespace(method="alphaedit", hparams=None, set=["mom2_n_tokens=1000"], negation_weight=0.5)
    hp = hparams_from_args(args, handle)
    assert hp.negation_weight == 0.5 and hp.negation_objective == "two-sided"  # the best form found out of sample
    for method in ("rome", "memit"):  # theirs too (the predicate write is one --set away)
        args.method = method
        hp = hparams_from_args(args, handle)
        assert hp.negation_weight == 0.5 and hp.negation_objective == "two-sided" and hp.negation_forms == "not"
    code = main(["edit", *FACT, "--method", "kn", "--negation-weight", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "kn has no negation-aware objective" in err and "rome" in err and "Traceback" not in err


def test_bench_negation_weight_reaches_only_the_methods_that_have_it():
    import argparse

    from editlab.cli.bench import hparams_from_args

    args = argparse.Namespace(hparams=[], set=[], negation_weight=2.0)
    assert hparams_from_args(args, ["rome", "kn"]) == {"rome": {"negation_weight": 2.0}}
    with pytest.raises(ValueError, match="none of kn has a negation-aware objective; it is offered by rome, memit"):
        hparams_from_args(args, ["kn"])

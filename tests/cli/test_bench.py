import json

from editlab.cli import main
from editlab.measure.metrics import METRIC_KEYS

from ..conftest import COUNTERFACT, need_shared


def test_unknown_method_is_a_clear_error(capsys):
    code = main(["bench", "--methods", "rome,nosuch", "--dataset", str(COUNTERFACT)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown editing method 'nosuch'; available: rome" in err


def test_a_hyperparameter_no_method_has_is_refused(capsys):
    code = main(["bench", "--methods", "rome", "--dataset", str(COUNTERFACT), "--set", "lyaer=6", "--no-store"])
    assert code == 2 and "none of rome has a hyperparameter 'lyaer'" in capsys.readouterr().err


def test_bad_dataset_names_the_record(tmp_path, capsys):
    bad = tmp_path / "facts.csv"
    bad.write_text("subject,prompt,target_new\nParis,Paris is the capital of,Italy\nRome,,France\n")
    code = main(["bench", "--methods", "rome", "--dataset", str(bad), "--no-store"])
    assert code == 2 and "facts.csv: record 2 (line 3): missing or empty field 'prompt'" in capsys.readouterr().err


def test_bench_json_has_both_conventions_the_unedited_row_and_the_protocol(shift, tmp_path, capsys):
    need_shared(COUNTERFACT)
    store = tmp_path / "runs.sqlite"
    code = main(
        [
            "bench",
            "--methods",
            shift,
            "--dataset",
            str(COUNTERFACT),
            "--n",
            "2",
            "--seed",
            "3",
            "--mode",
            "sequential",
            "--evaluate",
            "at_end",
            "--set",
            "shift.scale=1.5",
            "--generation-tokens",
            "2",
            "--store",
            str(store),
            "--export",
            str(tmp_path / "out.csv"),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["protocol"] == "sequential edits, batch size 1, evaluated at the end (retention)"
    assert [r["method"] for r in out["rows"]] == ["unedited", shift]
    assert set(METRIC_KEYS) <= set(out["rows"][1]["metrics"])
    assert out["rows"][1]["hparams"]["scale"] == 1.5 and out["config"]["n"] == 2 and out["config"]["seed"] == 3
    assert out["run_id"] is not None and (tmp_path / "out.csv").exists()
    # The same command again finds the stored run instead of editing anew.
    assert (
        main(
            [
                "bench",
                "--methods",
                shift,
                "--dataset",
                str(COUNTERFACT),
                "--n",
                "2",
                "--seed",
                "3",
                "--mode",
                "sequential",
                "--evaluate",
                "at_end",
                "--set",
                "shift.scale=1.5",
                "--generation-tokens",
                "2",
                "--store",
                str(store),
            ]
        )
        == 0
    )
    text = capsys.readouterr()
    assert "| unedited |" in text.out and f"run #{out['run_id']}" in text.err and "editing" not in text.err

"""`editlab train serac|mend` on a small model folder: a component trained from the command line,
written with its provenance where the next edit finds it, and refusals that name what was wrong."""

import json

import pytest

from editlab import EditSession, Fact
from editlab.cli import main
from editlab.methods import records, serac
from editlab.model.handle import load_model

from ..conftest import COUNTERFACT, need_shared, tiny_model

FACT = Fact(subject="Apple A5", prompt="Apple A5 was created by", target_new="Google", target_true="Apple")


@pytest.fixture
def folder(tmp_path, handle):
    path = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(path)
    handle.tokenizer.save_pretrained(path)
    return path


def test_train_serac_writes_a_classifier_the_next_edit_finds(tmp_path, monkeypatch, capsys, folder):
    need_shared(COUNTERFACT)
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["train", "serac", "--model", str(folder), "--data", str(COUNTERFACT), "--steps", "3"]
    argv += ["--set", "max_records=6", "--set", "heldout_scope=2", "--heldout", "1", "--json"]
    assert main(argv) == 0
    prov = json.loads(capsys.readouterr().out)
    assert prov["method"] == "serac" and prov["steps"] == 3 and prov["hparams"]["heldout_edits"] == 1
    assert prov["command"].startswith("editlab train serac --model") and "--steps 3" in prov["command"]
    trained = set(records.positions(prov["data"]["train_positions"]))
    assert len(trained) == 6 and not trained & records.excluded_positions(prov["data"]["records"])
    assert prov["heldout_edits"]["facts"] == 1 and prov["heldout_scope"]["facts"] == 2
    written = serac.user_dir() / f"{serac.file_stem(prov['model'])}.safetensors"
    assert json.loads(written.with_suffix(".json").read_text()) == prov
    # the next edit of the same model finds the classifier by its fingerprint, with no archive given
    other = load_model(str(folder), device="cpu")
    session = EditSession(other, online=False)
    record = session.edit(FACT, "serac")
    assert record.method == "serac"
    session.undo(record)


@pytest.mark.parametrize("flag", [["--layers", "1"], ["--max-minutes", "2"], ["--dev", "3"]])
def test_train_serac_refuses_mends_options_by_name(flag, capsys, folder):
    argv = ["train", "serac", "--model", str(folder), "--data", str(COUNTERFACT), *flag]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag[0] in err and "SERAC" in err


def test_train_refuses_a_malformed_range_before_loading_anything(capsys, folder, tmp_path):
    argv = ["train", "mend", "--model", str(folder), "--data", str(tmp_path / "absent.json")]
    argv += ["--train-range", "1000-x"]
    assert main(argv) == 2
    assert "1000-x" in capsys.readouterr().err

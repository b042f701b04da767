"""Facts and dataset files: strings where sequences go, wrong types, oversize text, and files that
used to escape the parsers (deep nesting, a huge CSV cell, another encoding, a numeric answer)."""

import json

import pytest

from editlab import Fact, Neighbor
from editlab.core.limits import LimitError
from editlab.facts.datasets import load_dataset, load_upload

OK = dict(subject="Rome", prompt="Rome is the capital of", target_new="France", target_true="Italy")


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"paraphrases": "Rome is located in"}, "Fact.paraphrases is a string"),
        ({"neighbors": "Paris is the capital of"}, "Fact.neighbors is a string"),
        ({"paraphrases": b"bytes"}, "Fact.paraphrases is a string"),
        ({"paraphrases": {"a": 1}}, "Fact.paraphrases is a mapping"),
        ({"paraphrases": 5}, "must be a list or tuple"),
        ({"paraphrases": [5.5, None]}, None),  # a number is its digits: accepted as "5.5"
        ({"paraphrases": [["nested"]]}, "Fact.paraphrases[1] must be a string"),
        ({"neighbors": [42]}, "Fact.neighbors[1] should be a prompt"),
        ({"neighbors": [{"answer": "x"}]}, "Fact.neighbors[1] should be a prompt"),
        ({"neighbors": [("a", "b", "c")]}, "Fact.neighbors[1] should be a prompt"),
        ({"neighbors": [Neighbor("", "x")]}, "Fact.neighbors[1].prompt is empty"),
        ({"neighbors": [Neighbor("Paris is in", ["France"])]}, "Fact.neighbors[1].answer must be a string"),
        ({"subject": None}, "Fact.subject must be a string"),
        ({"subject": ["Rome"]}, "Fact.subject must be a string"),
        ({"prompt": 12}, "does not occur"),
        ({"target_new": {"str": "France"}}, "Fact.target_new must be a string"),
        ({"target_new": True}, "Fact.target_new must be a string"),
        ({"target_new": "   "}, "Fact.target_new is empty"),
        ({"target_true": ["Italy"]}, "Fact.target_true must be a string"),
        ({"prompt": "Rome " + "x" * 5000}, "above this server's limit"),
        ({"target_new": "y" * 5000}, "above this server's limit"),
        ({"paraphrases": ["Rome is"] * 100}, "above this server's limit"),
        ({"prompt": "{} and {} are in", "subject": "Rome"}, "more than one '{}'"),
        ({"subject": "Paris"}, "does not occur"),
    ],
)
def test_a_bad_fact_is_refused_with_a_message_naming_the_field(changes, words):
    if words is None:
        assert Fact(**{**OK, **changes}).paraphrases == ("5.5",)
        return
    with pytest.raises((ValueError, LimitError)) as e:
        Fact(**{**OK, **changes})
    assert words in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "d,words",
    [
        ({"subject": "Rome"}, "needs prompt, target_new"),
        (["Rome", "Rome is", "France"], "should be a mapping"),
        ({**OK, "paraphrases": "Rome is located in"}, "Fact.paraphrases is a string"),
        ({**OK, "neighbors": [{"prompt": "Paris is in", "answer": 1889}]}, None),  # a numeric answer: its digits
    ],
)
def test_fact_from_dict(d, words):
    if words is None:
        assert Fact.from_dict(d).neighbors[0].answer == "1889"
        return
    with pytest.raises(ValueError, match=words):
        Fact.from_dict(d)


def _write(tmp_path, name, content) -> str:
    p = tmp_path / name
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    return str(p)


RECORD = {"subject": "Rome", "prompt": "Rome is the capital of", "target_new": "France"}


@pytest.mark.parametrize(
    "name,content,words",
    [
        ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("deep.jsonl", "[" * 100_000 + "]" * 100_000 + "\n", "line 1): nested too deeply"),
        ("big.csv", "subject,prompt,target_new\nRome,\"" + "x" * 200_000 + "\",France\n", "line"),
        (
            "latin1.json",
            json.dumps([{**RECORD, "subject": "Mün", "prompt": "Mün is"}], ensure_ascii=False).encode("latin-1"),
            "not UTF-8",
        ),
        ("latin1.csv", "subject,prompt,target_new\nMün,Mün is,France\n".encode("latin-1"), "not UTF-8"),
        ("num.json", json.dumps([{**RECORD, "neighbors": [{"prompt": "Paris is", "answer": 5}]}]), None),
        ("numprompt.json", json.dumps([{**RECORD, "neighbors": [{"prompt": 5, "answer": "x"}]}]), "neighbors[1]"),
        ("list.json", json.dumps([{**RECORD, "target_new": ["France"]}]), "should be a string"),
        ("para.json", json.dumps([{**RECORD, "paraphrases": [1, [2]]}]), "list of strings"),
        ("scalar.json", "5", "expected a JSON list"),
        ("strings.json", json.dumps(["a", "b"]), "should be an object"),
        ("empty.json", "[]", "holds no records"),
        ("bad.json", "[{", "not valid JSON"),
        ("bad.jsonl", '{"subject": 1\n', "line 1): not valid JSON"),
        ("empty.csv", "", "CSV file is empty"),
        ("cells.csv", "subject,prompt,target_new\nRome,Rome is,France,extra\n", "more cells"),
        ("quote.csv", 'subject,prompt,target_new\nRome,"Rome is,France\n', "record"),
        ("unknown.json", json.dumps([{"foo": 1}]), "cannot tell the dataset format"),
        ("long.json", json.dumps([{**RECORD, "prompt": "Rome " + "x" * 5000}]), "above this server's limit"),
        ("nan.json", '[{"subject": "Rome", "prompt": "Rome is", "target_new": NaN}]', "is the number nan, not text"),
        ("inf.json", '[{"subject": "Rome", "prompt": "Rome is", "target_new": 1e309}]', "is the number inf, not text"),
        ("ninf.jsonl", '{"subject": "Rome", "prompt": "Rome is", "target_new": -Infinity}\n', "is the number -inf"),
        ("year.json", '[{"subject": "Rome", "prompt": "Rome was founded in", "target_new": 753}]', None),
    ],
)
def test_a_bad_dataset_file_is_a_value_error_naming_the_file(tmp_path, name, content, words):
    path = _write(tmp_path, name, content)
    if words is None:
        load_dataset(path)  # accepted: a number is taken as its digits
        return
    with pytest.raises(ValueError) as e:
        load_dataset(path)
    assert name in str(e.value) and words in str(e.value), str(e.value)


def test_a_csv_saved_with_a_byte_order_mark_reads_as_without_one(tmp_path):
    plain = "subject,prompt,target_new\nRome,Rome is the capital of,France\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + plain.encode())  # as Excel saves "CSV UTF-8"
    (tmp_path / "plain.csv").write_text(plain)
    assert load_dataset(tmp_path / "bom.csv").facts == load_dataset(tmp_path / "plain.csv").facts
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([RECORD]).encode())
    assert load_dataset(tmp_path / "bom.json").facts[0].subject == RECORD["subject"]


def test_a_folder_is_not_a_dataset(tmp_path):
    (tmp_path / "d.json").mkdir()
    with pytest.raises(ValueError, match=r"d\.json: not a file"):
        load_dataset(tmp_path / "d.json")


@pytest.mark.parametrize(
    "name,data,words",
    [
        ("facts.pkl", b"\x80\x04", "upload a .json, .jsonl or .csv"),
        ("../../etc/passwd", b"root", "upload a .json"),
        ("big.json", b"[" + b" " * 3_000_000 + b"]", "above this server's limit"),
        ("deep.json", b"[" * 100_000, "deep.json"),
        ("bad.csv", b"subject,prompt,target_new\n\"" + b"x" * 200_000, "bad.csv"),
        ("latin.csv", "subject,prompt,target_new\nMün,Mün is,x\n".encode("latin-1"), "latin.csv: not UTF-8"),
        ("text.json", "not bytes", "expected the file's bytes"),
    ],
)
def test_an_upload_is_refused_naming_the_upload_never_a_server_path(name, data, words):
    with pytest.raises(ValueError) as e:
        load_upload(name, data)
    msg = str(e.value)
    assert words in msg, msg
    assert "/tmp" not in msg and "editlab-upload-" not in msg, msg

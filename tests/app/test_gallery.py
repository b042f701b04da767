import json

import pytest

from editlab import negate
from editlab_app import gallery as G


def test_every_gallery_fact_is_valid_and_negatable():
    entries = G.load_gallery()
    assert len(entries) >= 8
    assert len({name for name, _ in entries}) == len(entries)
    for name, fact in entries:
        assert fact.target_true, name
        assert fact.paraphrases and fact.neighbors, name
        assert all(n.answer for n in fact.neighbors), name
        negated, rule = negate(fact.prompt, fact.subject)
        assert negated is not None and rule.startswith(("aux:", "table")), f"{name}: negation is {rule!r}: {negated}"


def test_uploaded_json_and_csv_become_facts():
    data = json.dumps(
        [{"subject": "Louvre", "prompt": "The Louvre is in", "target_new": "Madrid", "target_true": "Paris"}]
    ).encode()
    facts, skipped = G.read_upload("mine.json", data, max_mb=1)
    assert [f.target_new for _, f in facts] == ["Madrid"] and not skipped
    csv = (
        b"subject,prompt,target_new,target_true,paraphrases\n"
        b"Big Ben,Big Ben is in,Oslo,London,Big Ben stands in|Big Ben rings in\n"
    )
    facts, _ = G.read_upload("mine.csv", csv, max_mb=1)
    assert facts[0][1].paraphrases == ("Big Ben stands in", "Big Ben rings in")


def test_uploads_of_records_that_are_not_facts_say_which_record():
    data = (
        b'{"subject": "Louvre", "prompt": "The Louvre is in", "target_new": "Madrid"}\n'
        b'{"subject": "X", "prompt": "nothing here", "target_new": "Y"}\n'
    )
    facts, skipped = G.read_upload("mine.jsonl", data, max_mb=1)
    assert len(facts) == 1 and len(skipped) == 1 and "record 2" in skipped[0]


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("facts.pkl", b"\x80\x04K\x01.", "upload a .json, .jsonl or .csv"),
        ("big.json", b"[" + b" " * (1024 * 1024) + b"]", "the limit here is 1 MB"),
        ("bad.json", b"[{\"subject\": ", "not valid JSON"),
        ("latin1.csv", "subject,prompt,target_new\nM\xfcnchen,M\xfcnchen is in,Rome\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason(name, data, message):
    with pytest.raises(ValueError, match=message):
        G.read_upload(name, data, max_mb=1)

"""editlab.facts.datasets.load_upload on any upload: random bytes; JSON, JSONL and CSV of records in every
format the loader detects (CounterFact flat and ROME, zsRE, KnowEdit, plain facts) with random
values; a UTF-8 byte-order mark or not; skip_invalid on and off. Loaded or refused with a bounded
ValueError that names the upload and never the server's temporary file."""

import csv
import io
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from editlab import Fact
from editlab.facts.datasets import Dataset, load_upload

from .strategies import accepted_or_refused, any_text, examples, keys, numbers, settings, text, values, words

# Every field name the formats use (editlab.facts.datasets), and a few that none does.
FIELD_NAMES = [
    "case_id",
    "subject",
    "prompt",
    "target_new",
    "target_true",
    "ground_truth",
    "rephrase_prompt",
    "locality_prompt",
    "locality_ground_truth",
    "requested_rewrite",
    "paraphrase_prompts",
    "neighborhood_prompts",
    "generation_prompts",
    "src",
    "alt",
    "answers",
    "rephrase",
    "loc",
    "loc_ans",
    "portability",
    "locality",
    "concept",
    "text",
    "labels",
    "paraphrases",
    "neighbors",
    "negated_prompt",
    "str",
    "data",
    "records",
    "facts",
    "answer",
    "extra",
]

plain = st.one_of(words, st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=16))
cell = st.one_of(plain, plain, any_text, numbers, st.none(), st.booleans(), values(max_leaves=6))


@st.composite
def good_record(draw) -> dict:
    """A record of one format, valid or nearly (so that the checks past detection are reached)."""
    subject, rest, new, true = draw(plain), draw(plain), draw(plain), draw(plain)
    true = true if true.strip() != new.strip() else true + " (the true one)"
    prompt = f"{subject} {rest}"
    kind = draw(st.sampled_from(["counterfact", "counterfact-rome", "zsre", "knowedit", "wikibio", "facts"]))
    if kind == "counterfact":
        rec = {
            "subject": subject,
            "prompt": prompt,
            "target_new": new,
            "ground_truth": true,
            "rephrase_prompt": draw(plain),
            "locality_prompt": draw(plain),
            "locality_ground_truth": draw(plain),
        }
    elif kind == "counterfact-rome":
        rec = {
            "requested_rewrite": {
                "prompt": f"{{}} {rest}",
                "subject": subject,
                "target_new": {"str": new},
                "target_true": {"str": true},
            },
            "paraphrase_prompts": draw(st.lists(plain, max_size=3)),
            "neighborhood_prompts": draw(st.lists(plain, max_size=3)),
            "generation_prompts": [draw(plain)],
        }
        if draw(st.booleans()):
            rec["requested_rewrite"] = [rec["requested_rewrite"]]
    elif kind == "zsre":
        rec = {
            "subject": subject,
            "src": prompt,
            "alt": new,
            "answers": [true],
            "rephrase": draw(plain),
            "loc": draw(plain),
            "loc_ans": draw(plain),
        }
    elif kind == "knowedit":
        group = {"Relation_Specificity": [{"prompt": draw(plain), "ground_truth": [[draw(plain)]]}]}
        rec = {
            "subject": subject,
            "prompt": prompt,
            "target_new": new,
            "ground_truth": [true],
            "portability": group,
            "locality": group,
        }
    elif kind == "wikibio":
        rec = {"concept": subject, "text": prompt, "labels": new, "locality": {}}
    else:
        rec = {
            "subject": subject,
            "prompt": prompt,
            "target_new": new,
            "target_true": true,
            "paraphrases": draw(st.one_of(plain, st.lists(plain, max_size=3))),
            "neighbors": draw(
                st.one_of(
                    st.just(f"{draw(plain)}=>{draw(plain)}"),
                    st.lists(st.fixed_dictionaries({"prompt": plain, "answer": plain}), max_size=2),
                )
            ),
        }
    garbage = draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=2, unique=True)) if draw(st.booleans()) else []
    for key in garbage:  # a field or two made anything
        if key in rec and isinstance(rec[key], dict) and draw(st.booleans()):
            inner = draw(st.sampled_from(sorted(rec[key]) or ["prompt"]))
            rec[key] = {**rec[key], inner: draw(cell)}
        else:
            rec[key] = draw(cell)
    return rec


junk_record = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), keys), cell, max_size=6), values(max_leaves=6)
)


@st.composite
def records(draw) -> list:
    """Mostly valid records of one format or several, sometimes one of anything among them, or none."""
    rows = draw(st.lists(good_record(), min_size=1, max_size=4))
    if draw(st.sampled_from([False, False, False, True])):
        rows.insert(draw(st.integers(0, len(rows))), draw(junk_record))
    return [] if draw(st.sampled_from([False] * 20 + [True])) else rows


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    header = sorted({str(k) for r in rows if isinstance(r, dict) for k in r}) or ["subject"]
    w = csv.writer(out)
    w.writerow(header)
    for r in rows:
        r = r if isinstance(r, dict) else {}
        w.writerow(
            [
                "|".join(map(str, v)) if isinstance(v, list) else ("" if v is None else str(v))
                for v in (r.get(h, r.get(int(h)) if h.lstrip("-").isdigit() else None) for h in header)
            ]
        )
    return out.getvalue()


@st.composite
def upload(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".json", ".jsonl", ".csv", ".JSON", ".Csv"]))
    stem = draw(st.one_of(words, st.text(st.characters(exclude_characters="/\\\x00"), min_size=1, max_size=60)))
    kind = draw(st.sampled_from(["records", "records", "records", "bytes", "text", "mangled"]))
    if kind == "bytes":
        data = draw(st.binary(max_size=300))
    elif kind == "text":
        data = draw(st.one_of(text, any_text)).encode("utf-8", "surrogatepass")
    else:
        rows = draw(records())
        layout = {".json": "json", ".jsonl": "jsonl", ".csv": "csv"}[suffix.lower()]
        if draw(st.sampled_from([False, False, False, True])):  # a body that does not match the suffix
            layout = draw(st.sampled_from(["json", "jsonl", "csv", "wrapped"]))
        if layout == "json":
            body = json.dumps(rows, default=str, allow_nan=True)
        elif layout == "wrapped":
            body = json.dumps({draw(st.sampled_from(["data", "records", "facts", "x"])): rows}, default=str)
        elif layout == "jsonl":
            body = "\n".join(json.dumps(r, default=str) for r in rows)
        else:
            body = _csv(rows)
        data = body.encode("utf-8", "surrogatepass")
        if kind == "mangled" and data:
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + draw(st.binary(max_size=4)) + data[at + draw(st.integers(0, 4)) :]
    if draw(st.sampled_from([False, False, False, True])):
        data = b"\xef\xbb\xbf" + data
    return stem + suffix, data


@settings(max_examples=examples(500))
@given(upload(), st.booleans())
def test_any_upload_is_loaded_or_refused_naming_it(file, skip_invalid):
    name, data = file
    ds, error = accepted_or_refused(load_upload, name, data, skip_invalid=skip_invalid)
    base = Path(name).name  # a visitor's file name, never a path
    text = str(error) if error is not None else "\n".join(ds.skipped)
    if error is not None:
        assert base in text or repr(base) in text, f"does not name {base!r}: {text[:300]!r}"
    assert "editlab-upload-" not in text, f"names the server's temporary file: {text[:300]!r}"
    if ds is None:
        return
    assert isinstance(ds, Dataset) and len(ds) >= 1 and ds.path == "" and ds.name == base
    assert all(isinstance(f, Fact) for f in ds) and len(ds.records) == len(ds.facts) == len(ds.portability)
    assert all(len(s) <= 2000 for s in ds.skipped)

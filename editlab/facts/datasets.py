"""Editing datasets from files a user gives: CounterFact, zsRE, KnowEdit, plain fact tables.

Every loader validates the whole file and stops at the first bad record with a ``ValueError`` that
names the file, the record's number (1-based; plus the line for JSONL/CSV) and what is wrong.
Formats (``load_dataset`` detects them from the first record):

- ``counterfact``: EasyEdit's flat CounterFact (``case_id, prompt, subject, target_new,
  ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth``);
- ``counterfact-rome``: the original ROME/MEMIT file (``requested_rewrite: {prompt with {},
  subject, target_new: {str}, target_true: {str}}, paraphrase_prompts, neighborhood_prompts,
  generation_prompts``);
- ``zsre``: MEND/ROME zsRE (``subject, src, alt, answers, rephrase, loc, loc_ans``);
- ``knowedit``: KnowEdit (zjunlp) JSON (``subject, prompt, target_new, ground_truth,
  rephrase_prompt?, portability: {kind: [{prompt, ground_truth}]}, locality: {kind: [...]}``;
  WikiBio's ``concept, text, labels`` too);
- ``facts``: a user's own CSV / JSON / JSONL with ``subject, prompt, target_new`` and optionally
  ``target_true, paraphrases, neighbors, case_id``. In CSV, ``paraphrases`` and ``neighbors`` hold
  several entries separated by ``|``; a neighbour is ``prompt=>answer`` (as on the command line).

A record of any format may carry ``negated_prompt``: the prompt negated by the user, used for the
negation probe instead of :func:`editlab.negate`'s (which leaves out a prompt it cannot negate).
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from editlab.core.bounded import short
from editlab.facts.fact import Fact, Neighbor

FORMATS = ("counterfact", "counterfact-rome", "zsre", "knowedit", "facts")
UPLOAD_SUFFIXES = (".json", ".jsonl", ".csv")


@dataclass(frozen=True)
class Dataset:
    """Facts loaded from one file, with what the metrics need besides a :class:`Fact`.

    ``records[i]`` is the 1-based record number of ``facts[i]`` in the file; ``portability[i]``
    holds KnowEdit's portability questions (prompt, first accepted answer) and
    ``generation_prompts[i]`` CounterFact's generation prompts (kept, not scored).
    ``skipped`` lists the records left out when loading with ``skip_invalid=True``.
    """

    name: str
    format: str
    path: str
    facts: tuple[Fact, ...]
    records: tuple[int, ...]
    portability: tuple[tuple[Neighbor, ...], ...]
    generation_prompts: tuple[tuple[str, ...], ...]
    skipped: tuple[str, ...] = ()  # with skip_invalid: what was wrong with each record left out

    def __len__(self) -> int:
        return len(self.facts)

    def __iter__(self) -> Iterator[Fact]:
        return iter(self.facts)

    def __getitem__(self, i: int) -> Fact:
        return self.facts[i]

    def subset(self, n: int | None, seed: int | None = 0) -> Dataset:
        """``n`` facts drawn without replacement by ``random.Random(seed)``, kept in file order.
        ``seed=None`` takes the first ``n``; ``n=None`` (or ``n >= len``) keeps everything."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"subset size must be at least 1, got {n}")
        idx = list(range(n)) if seed is None else sorted(random.Random(seed).sample(range(len(self)), n))
        return replace(
            self,
            facts=tuple(self.facts[i] for i in idx),
            records=tuple(self.records[i] for i in idx),
            portability=tuple(self.portability[i] for i in idx),
            generation_prompts=tuple(self.generation_prompts[i] for i in idx),
        )


class RecordError(ValueError):
    """What is wrong with one record (the loader adds the file name and record number)."""


# ---- reading files ------------------------------------------------------------------------------
def _read_records(path: Path) -> list[tuple[str, object]]:
    """[(where, record)]: ``where`` is "record N" or "record N (line L)". Every failure to read the
    file (not text, nested too deeply, a CSV field over the csv module's limit) is a ValueError
    that names the file and, where known, the line."""
    if not path.exists():
        raise FileNotFoundError(f"dataset file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path.name}: not a file (give a .json, .jsonl or .csv file of facts)")
    try:
        return _parse_records(path)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path.name}: not UTF-8 text (undecodable byte at offset {e.start}); save the file as "
            "UTF-8 and upload it again"
        ) from None
    except RecursionError:
        raise ValueError(
            f"{path.name}: the JSON is nested too deeply to read; a record is an object of "
            "strings and lists (see editlab.facts.datasets)"
        ) from None


def _parse_records(path: Path) -> list[tuple[str, object]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _parse_csv(path)
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".jsonl" or (suffix != ".json" and not text.lstrip().startswith("[")):
        return _parse_jsonl(path, text)
    return _parse_json(path, text)


def _parse_csv(path: Path) -> list[tuple[str, object]]:
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark (Excel) is not a column name
        reader = csv.DictReader(f)
        try:
            if not reader.fieldnames:
                raise ValueError(f"{path.name}: the CSV file is empty (expected a header row)")
            out = []
            for i, row in enumerate(reader, 1):
                if None in row:
                    raise ValueError(
                        f"{path.name}: record {i} (line {reader.line_num}): more cells than header columns"
                    )
                out.append((f"record {i} (line {reader.line_num})", row))
        except csv.Error as e:
            raise ValueError(
                f"{path.name}: line {reader.line_num}: not readable as CSV ({e}); a cell holds "
                f"at most {csv.field_size_limit():,} characters and quotes must be closed"
            ) from None
        return out


def _parse_jsonl(path: Path, text: str) -> list[tuple[str, object]]:
    out = []
    n = 0
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        n += 1
        try:
            out.append((f"record {n} (line {line_no})", json.loads(line)))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path.name}: record {n} (line {line_no}): not valid JSON ({e.msg})") from None
        except RecursionError:
            raise ValueError(f"{path.name}: record {n} (line {line_no}): nested too deeply to read") from None
    return out


def _parse_json(path: Path, text: str) -> list[tuple[str, object]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path.name}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if isinstance(data, dict):
        for key in ("data", "records", "facts"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise ValueError(f"{path.name}: expected a JSON list of records at the top level, got {type(data).__name__}")
    return [(f"record {i}", r) for i, r in enumerate(data, 1)]


def load_upload(name: str, data: bytes, *, skip_invalid: bool = True, limits=None) -> Dataset:
    """A dataset from an uploaded file's bytes (JSON / JSONL / CSV, never unpickled), refused above
    the operator's ``max_upload_bytes``. Every message names the upload, never a server path;
    ``Dataset.path`` is empty."""
    import os
    import tempfile

    from editlab.core.limits import current

    name = Path(str(name or "upload")).name  # a visitor's file name, not a path
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise ValueError(f"{name!r}: upload a .json, .jsonl or .csv file of facts")
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"{name!r}: expected the file's bytes, got {type(data).__name__}")
    (limits or current()).check("max_upload_bytes", len(data), f"{name!r} ({len(data):,} bytes)")
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="editlab-upload-")
    tmp_name = Path(tmp).name
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            ds = load_dataset(tmp, skip_invalid=skip_invalid)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(str(e).replace(tmp, name).replace(tmp_name, name)) from None
    finally:
        os.unlink(tmp)
    return Dataset(
        name=name,
        format=ds.format,
        path="",
        facts=ds.facts,
        records=ds.records,
        portability=ds.portability,
        generation_prompts=ds.generation_prompts,
        skipped=tuple(x.replace(tmp_name, name) for x in ds.skipped),
    )


# ---- field access with clear messages ---------------------------------------------------------------
def _str(rec: dict, key: str, *, required: bool = True) -> str | None:
    if key not in rec or rec[key] is None or (isinstance(rec[key], str) and not rec[key].strip()):
        if required:
            raise RecordError(f"missing or empty field {key!r}")
        return None
    value = rec[key]
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(
            f"field {key!r} is the number {value!r}, not text (JSON's NaN/Infinity or a number too "
            "large for a float): give it as a string"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise RecordError(f"field {key!r} should be a string, got {type(value).__name__}")
    return value


def _str_list(rec: dict, key: str) -> list[str]:
    value = rec.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"field {key!r} should be a string or a list of strings")
    return [v for v in value if v.strip()]


def _first_alias(value, what: str) -> str:
    """KnowEdit answers come as a string, a list of aliases, or a list of alias lists."""
    while isinstance(value, list):
        if not value:
            raise RecordError(f"{what} is an empty list")
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{what} should be a non-empty string (or list of them), got {short(value)}")
    return value


def _fact(rec: dict, **kw) -> Fact:
    """The record's fact; a ``negated_prompt`` field (any format) is the user's own negation."""
    try:
        return Fact(**kw, negated_prompt=_str(rec, "negated_prompt", required=False))
    except ValueError as e:
        raise RecordError(str(e)) from None


# ---- one converter per format --------------------------------------------------------------------
@dataclass(frozen=True)
class _Converted:
    fact: Fact
    portability: tuple[Neighbor, ...] = ()
    generation_prompts: tuple[str, ...] = ()


def _counterfact_flat(rec: dict, number: int) -> _Converted:
    target_true = _str(rec, "ground_truth")
    neighbors = []
    loc = _str(rec, "locality_prompt", required=False)
    if loc:
        neighbors.append(Neighbor(loc, _str(rec, "locality_ground_truth", required=False) or target_true))
    return _Converted(
        _fact(
            rec,
            subject=_str(rec, "subject"),
            prompt=_str(rec, "prompt"),
            target_new=_str(rec, "target_new"),
            target_true=target_true,
            paraphrases=tuple(_str_list(rec, "rephrase_prompt")),
            neighbors=tuple(neighbors),
            case_id=rec.get("case_id", number - 1),
        )
    )


def _target_str(rr: dict, key: str) -> str:
    value = rr.get(key)
    if isinstance(value, dict):
        value = value.get("str")
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"requested_rewrite.{key}.str is missing or empty")
    return value


def _counterfact_rome(rec: dict, number: int) -> _Converted:
    rr = rec.get("requested_rewrite")
    if isinstance(rr, list) and len(rr) == 1:  # MCF/multi-counterfact wraps it in a list
        rr = rr[0]
    if not isinstance(rr, dict):
        raise RecordError("field 'requested_rewrite' should be an object")
    prompt = _str(rr, "prompt")
    if "{}" not in prompt:
        raise RecordError(f"requested_rewrite.prompt {short(prompt)} has no '{{}}' placeholder for the subject")
    target_true = _target_str(rr, "target_true")
    return _Converted(
        _fact(
            rec,
            subject=_str(rr, "subject"),
            prompt=prompt,
            target_new=_target_str(rr, "target_new"),
            target_true=target_true,
            paraphrases=tuple(_str_list(rec, "paraphrase_prompts")),
            # CounterFact's neighbourhood prompts are about other subjects that share the true object.
            neighbors=tuple(Neighbor(p, target_true) for p in _str_list(rec, "neighborhood_prompts")),
            case_id=rec.get("case_id", number - 1),
        ),
        generation_prompts=tuple(_str_list(rec, "generation_prompts")),
    )


def _zsre(rec: dict, number: int) -> _Converted:
    answers = rec.get("answers")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise RecordError("field 'answers' should be a non-empty list of strings")
    target_new = _str(rec, "alt")
    # A few zsRE records ask to "change" the answer to itself; keep them, without a true target.
    target_true = answers[0] if answers[0].strip() != target_new.strip() else None
    neighbors = []
    loc = _str(rec, "loc", required=False)
    if loc:
        neighbors.append(Neighbor(loc, _str(rec, "loc_ans")))
    return _Converted(
        _fact(
            rec,
            subject=_str(rec, "subject"),
            prompt=_str(rec, "src"),
            target_new=target_new,
            target_true=target_true,
            paraphrases=tuple(_str_list(rec, "rephrase")),
            neighbors=tuple(neighbors),
            case_id=rec.get("case_id", number - 1),
        )
    )


def _knowedit_group(rec: dict, key: str) -> list[Neighbor]:
    group = rec.get(key)
    if group is None:
        return []
    if not isinstance(group, dict):
        raise RecordError(f"field {key!r} should be an object of {{kind: [{{prompt, ground_truth}}]}}")
    out = []
    for kind, entries in group.items():
        kind = kind if isinstance(kind, str) and len(kind) <= 60 else short(kind, 60)  # a key of any length
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise RecordError(f"{key}.{kind} should be a list")
        for j, e in enumerate(entries, 1):
            if not isinstance(e, dict):
                raise RecordError(f"{key}.{kind}[{j}] should be an object with 'prompt' and 'ground_truth'")
            prompt = _first_alias(e.get("prompt"), f"{key}.{kind}[{j}].prompt")
            out.append(Neighbor(prompt, _first_alias(e.get("ground_truth"), f"{key}.{kind}[{j}].ground_truth")))
    return out


def _knowedit(rec: dict, number: int) -> _Converted:
    if "concept" in rec and "prompt" not in rec:  # WikiBio: a passage continued by a label sentence
        subject, prompt, target_new, target_true = _str(rec, "concept"), _str(rec, "text"), _str(rec, "labels"), None
    else:
        subject, prompt, target_new = (
            _str(rec, "subject"),
            _str(rec, "prompt"),
            _first_alias(rec.get("target_new"), "target_new"),
        )
        gt = rec.get("ground_truth")
        target_true = None if gt in (None, "", []) else _first_alias(gt, "ground_truth")
        if target_true is not None and target_true.strip() == target_new.strip():
            target_true = None
    paraphrases = _str_list(rec, "rephrase_prompt") + _str_list(rec, "rephrase")
    return _Converted(
        _fact(
            rec,
            subject=subject,
            prompt=prompt,
            target_new=target_new,
            target_true=target_true,
            paraphrases=tuple(paraphrases),
            neighbors=tuple(_knowedit_group(rec, "locality")),
            case_id=rec.get("case_id", number - 1),
        ),
        portability=tuple(_knowedit_group(rec, "portability")),
    )


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split("|") if v.strip()]


def _user_fact(rec: dict, number: int) -> _Converted:
    paraphrases = rec.get("paraphrases")
    if isinstance(paraphrases, str):
        paraphrases = _split(paraphrases)
    elif paraphrases is not None:
        paraphrases = _str_list(rec, "paraphrases")
    neighbors = []
    raw = rec.get("neighbors")
    if isinstance(raw, str):
        raw = _split(raw)
    for j, n in enumerate(raw or [], 1):
        if isinstance(n, str):
            prompt, _, answer = n.partition("=>")
            neighbors.append(Neighbor(prompt.strip(), answer.strip() or None))
        elif isinstance(n, dict) and isinstance(n.get("prompt"), str):
            neighbors.append(Neighbor(n["prompt"], n.get("answer")))
        else:
            raise RecordError(f"neighbors[{j}] should be 'prompt=>answer' or {{prompt, answer}}")
    target_true = _str(rec, "target_true", required=False)
    if target_true is None:
        target_true = _str(rec, "ground_truth", required=False)
    case_id = rec.get("case_id")
    return _Converted(
        _fact(
            rec,
            subject=_str(rec, "subject"),
            prompt=_str(rec, "prompt"),
            target_new=_str(rec, "target_new"),
            target_true=target_true,
            paraphrases=tuple(paraphrases or ()),
            neighbors=tuple(neighbors),
            case_id=case_id if case_id not in (None, "") else number - 1,
        )
    )


CONVERTERS: dict[str, Callable[[dict, int], _Converted]] = {
    "counterfact": _counterfact_flat,
    "counterfact-rome": _counterfact_rome,
    "zsre": _zsre,
    "knowedit": _knowedit,
    "facts": _user_fact,
}


def detect_format(record: object) -> str:
    """The format a record belongs to, from its keys."""
    if not isinstance(record, dict):
        raise RecordError(f"a record should be an object, got {type(record).__name__}")
    keys = set(record)
    if "requested_rewrite" in keys:
        return "counterfact-rome"
    if {"src", "alt"} <= keys:
        return "zsre"
    if (
        isinstance(record.get("locality"), dict)
        or isinstance(record.get("portability"), dict)
        or {"concept", "labels"} <= keys
    ):
        return "knowedit"
    if {"ground_truth", "locality_prompt"} <= keys or {"ground_truth", "rephrase_prompt"} <= keys:
        return "counterfact"
    if {"subject", "prompt", "target_new"} <= keys:
        return "facts"
    raise RecordError(
        "cannot tell the dataset format from its fields "
        + ", ".join(k if len(k) <= 60 else short(k, 60) for k in sorted(map(str, keys))[:12])  # CSV headers, any length
        + f"; supported: {', '.join(FORMATS)} (see editlab.facts.datasets)"
    )


def load_dataset(
    path: str | Path, format: str | None = None, n: int | None = None, seed: int | None = 0, skip_invalid: bool = False
) -> Dataset:
    """Load an editing dataset (format detected from the first record unless given), validate
    every record, and optionally draw a seeded subset of ``n`` facts.

    A bad record raises ``ValueError`` naming the file and the record; with ``skip_invalid`` it is
    left out instead and described in ``Dataset.skipped`` (the public zsRE file, for one, has two
    records whose new target is empty).
    """
    path = Path(path).expanduser()
    if format is not None and format not in CONVERTERS:
        raise ValueError(f"unknown dataset format {format!r}; supported: {', '.join(FORMATS)}")
    records = _read_records(path)
    if not records:
        raise ValueError(f"{path.name}: the file holds no records")
    if format is None:
        try:
            format = detect_format(records[0][1])
        except RecordError as e:
            raise ValueError(f"{path.name}: {records[0][0]}: {e}") from None
    convert = CONVERTERS[format]
    facts, numbers, port, gens, skipped = [], [], [], [], []
    for i, (where, rec) in enumerate(records, 1):
        try:
            if not isinstance(rec, dict):
                raise RecordError(f"a record should be an object, got {type(rec).__name__}")
            try:
                c = convert(rec, i)
            except (TypeError, AttributeError, KeyError, IndexError) as e:  # a shape no check foresaw
                raise RecordError(f"unexpected content ({type(e).__name__}: {short(str(e), 200)})") from None
        except RecordError as e:
            if skip_invalid:
                skipped.append(f"{where}: {e}")
                continue
            raise ValueError(
                f"{path.name}: {where}: {e} (reading as {format}; skip_invalid=True / "
                "--skip-invalid leaves bad records out)"
            ) from None
        facts.append(c.fact)
        numbers.append(i)
        port.append(c.portability)
        gens.append(c.generation_prompts)
    if not facts:
        raise ValueError(f"{path.name}: no valid record (first problem: {skipped[0]})")
    ds = Dataset(
        name=path.name,
        format=format,
        path=str(path),
        facts=tuple(facts),
        records=tuple(numbers),
        portability=tuple(port),
        generation_prompts=tuple(gens),
        skipped=tuple(skipped),
    )
    return ds.subset(n, seed)


def load_counterfact(
    path: str | Path, n: int | None = None, seed: int | None = 0, skip_invalid: bool = False
) -> Dataset:
    """CounterFact in EasyEdit's flat format or the original ``requested_rewrite`` format."""
    ds = load_dataset(path, None, n, seed, skip_invalid)
    if ds.format not in ("counterfact", "counterfact-rome"):
        raise ValueError(f"{ds.name}: not CounterFact (its records look like the {ds.format!r} format)")
    return ds


def load_zsre(path: str | Path, n: int | None = None, seed: int | None = 0, skip_invalid: bool = False) -> Dataset:
    return load_dataset(path, "zsre", n, seed, skip_invalid)


def load_knowedit(path: str | Path, n: int | None = None, seed: int | None = 0, skip_invalid: bool = False) -> Dataset:
    return load_dataset(path, "knowedit", n, seed, skip_invalid)


def load_facts(path: str | Path, n: int | None = None, seed: int | None = 0, skip_invalid: bool = False) -> Dataset:
    """A user's own facts: CSV (header row) or JSON/JSONL with subject, prompt, target_new, ..."""
    return load_dataset(path, "facts", n, seed, skip_invalid)


def from_facts(facts: Sequence[Fact], name: str = "facts") -> Dataset:
    """Wrap facts built in code (or typed into the app) as a dataset."""
    facts = tuple(facts)
    return Dataset(
        name=name,
        format="facts",
        path="",
        facts=facts,
        records=tuple(range(1, len(facts) + 1)),
        portability=tuple(() for _ in facts),
        generation_prompts=tuple(() for _ in facts),
    )

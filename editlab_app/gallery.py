"""Example facts for the edit form: the built-in gallery and a visitor's uploaded file.

Uploads are parsed as JSON, JSONL or CSV only (``json`` / ``csv`` modules through
``editlab.facts.datasets``), never unpickled, and refused above the operator's size limit.
"""

from __future__ import annotations

import json
from pathlib import Path

from editlab import Fact

GALLERY = Path(__file__).resolve().parent / "data" / "example_facts.json"
UPLOAD_SUFFIXES = (".json", ".jsonl", ".csv")
MAX_UPLOAD_FACTS = 500


def load_gallery(path: Path = GALLERY) -> list[tuple[str, Fact]]:
    """[(name, Fact)] from the gallery file; every entry is validated as a Fact."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    for i, entry in enumerate(data["facts"], 1):
        fields = {k: v for k, v in entry.items() if k != "name"}
        try:
            fact = Fact.from_dict(fields)
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path.name}: fact {i} ({entry.get('name', '?')}): {e}") from e
        out.append((entry.get("name") or f"{fact.subject}: {fact.target_new}", fact))
    return out


def upload_dataset(name: str, data: bytes, max_mb: float):
    """An uploaded file read by :func:`editlab.facts.datasets.load_dataset` (any format it knows), bad
    records left out and listed in ``skipped``; the upload's own name replaces the temporary file's
    in every message. Raises ValueError (readable) for a file too large, of another type, or
    unreadable."""
    from editlab.facts.datasets import load_upload

    suffix = Path(name or "").suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise ValueError(f"{name!r}: upload a .json, .jsonl or .csv file of facts")
    check_size(name, data, max_mb)
    return load_upload(name, data, skip_invalid=True)  # also the library's own byte limit


def check_size(name: str, data: bytes, max_mb: float) -> None:
    """Refuse an upload over the operator's limit (ValueError naming the file and the limit)."""
    if len(data) > max_mb * 1024 * 1024:
        raise ValueError(f"{name!r} is {len(data) / 1e6:.1f} MB; the limit here is {max_mb:g} MB")


def read_upload(name: str, data: bytes, max_mb: float) -> tuple[list[tuple[str, Fact]], list[str]]:
    """Facts from an uploaded file for the edit form: ([(name, Fact)], notes on records skipped)."""
    ds = upload_dataset(name, data, max_mb)
    skipped = list(ds.skipped)
    facts = list(ds.facts)
    if len(facts) > MAX_UPLOAD_FACTS:
        skipped.append(f"only the first {MAX_UPLOAD_FACTS} of {len(facts)} facts are offered")
        facts = facts[:MAX_UPLOAD_FACTS]
    if not facts:
        raise ValueError(f"{name!r} holds no usable facts" + (f": {skipped[0]}" if skipped else ""))
    return [(f"{name} #{i}: {f.subject} → {f.target_new}", f) for i, f in enumerate(facts, 1)], skipped

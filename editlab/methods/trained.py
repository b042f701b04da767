"""Files of trained components (MEND's editor, SERAC's scope classifier): where they are shipped and
cached, their file names, digests and the provenance written beside them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from editlab.core import paths


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_stem(name: str) -> str:
    """A file name for a model name (``org/model`` -> ``org--model``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name).replace("/", "--")).strip("-") or "model"


def provenance(path: Path) -> dict:
    """The provenance JSON beside a component file (``<name>.json``); {} when there is none."""
    p = Path(path).with_suffix(".json")
    return json.loads(p.read_text()) if p.is_file() else {}


def user_dir(kind: str) -> Path:
    """Where components of ``kind`` ("mend", "serac") trained by a user go by default: the cache root's folder."""
    return paths.cache_dir(kind)


def files(kind: str) -> list[Path]:
    """Component files an edit looks at: the ones shipped with editlab, then those in the cache root."""
    shipped_dir = paths.PACKAGE_DATA / kind
    shipped = sorted(shipped_dir.glob("*.safetensors")) if shipped_dir.is_dir() else []
    return shipped + sorted(user_dir(kind).glob("*.safetensors"))

"""Where editlab keeps what it computes: one cache root, safe to delete.

The root is ``$EDITLAB_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/editlab``, else
``~/.cache/editlab``. Nothing here is process-global state: every call reads the environment.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# what ships inside the package: bundled statistics, calibrations, negation templates, simple facts
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data"


def cache_root() -> Path:
    env = os.environ.get("EDITLAB_CACHE_DIR")
    if env:
        root = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        root = Path(base) / "editlab"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def key_digest(**fields) -> str:
    """A short, stable digest of everything that determines a cached object."""
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write then rename, so a crash never leaves a half-written cache entry."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)

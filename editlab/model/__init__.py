"""The model and what is read from it: the wrapper that knows its architecture (:mod:`.handle`),
hooks as context managers (:mod:`.nethook`), tokenisation of targets (:mod:`.tokens`), text corpora
and the second-moment statistics of MLP keys (:mod:`.stats`, :mod:`.stats_import`).

May import: :mod:`editlab.core`, :mod:`editlab.facts`.
"""

from editlab.model.handle import DEFAULT_MODEL, SUPPORTED_FAMILIES, ArchMap, ModelHandle, load_model

__all__ = ["DEFAULT_MODEL", "SUPPORTED_FAMILIES", "ArchMap", "ModelHandle", "load_model"]

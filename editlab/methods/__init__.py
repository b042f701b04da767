"""The registry of editing methods: one module each, found by name, checked against the method
contract (:class:`~editlab.methods.base.EditMethod`) when the registry first imports it."""

from __future__ import annotations

import importlib

from editlab.core.bounded import short
from editlab.methods.base import (
    AttachingMethod,
    Capabilities,
    EditError,
    EditMethod,
    HParamsBase,
    LoadReport,
    MethodContext,
    MethodContractError,
    StatefulMethod,
    check_method,
)

# name -> module path; each module fulfils EditMethod (NAME, CAPABILITIES, HParams, touched, apply,
# and attach / State + forget where its capabilities say so)
REGISTRY = {
    "rome": "editlab.methods.rome",
    "memit": "editlab.methods.memit",
    "alphaedit": "editlab.methods.alphaedit",
    "pmet": "editlab.methods.pmet",
    "ft-l": "editlab.methods.ft_l",
    "ft-m": "editlab.methods.ft_m",
    "grace": "editlab.methods.grace",
    "kn": "editlab.methods.kn",
    "ike": "editlab.methods.ike",
    "mend": "editlab.methods.mend",
    "serac": "editlab.methods.serac",
}
_checked: set[tuple[str, str]] = set()  # (name, module path) pairs that passed check_method


def available() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> EditMethod:
    """The method module registered as ``name``; a module that breaks the contract raises
    :class:`MethodContractError` naming what it lacks."""
    key = (name or "").strip().lower()
    if key not in REGISTRY:
        raise ValueError(f"unknown editing method {short(name)}; available: {', '.join(REGISTRY)}")
    module = importlib.import_module(REGISTRY[key])
    if (key, REGISTRY[key]) not in _checked:
        check_method(module, key)
        _checked.add((key, REGISTRY[key]))
    return module


def capabilities(name: str) -> Capabilities:
    return get(name).CAPABILITIES


def having(capability: str) -> list[str]:
    """The registered methods that declare ``capability`` (a :class:`Capabilities` field)."""
    if capability not in Capabilities.__dataclass_fields__:
        raise ValueError(f"unknown capability {capability!r}; known: {', '.join(Capabilities.__dataclass_fields__)}")
    return [m for m in REGISTRY if getattr(get(m).CAPABILITIES, capability)]


__all__ = [
    "REGISTRY",
    "available",
    "get",
    "capabilities",
    "having",
    "Capabilities",
    "EditMethod",
    "AttachingMethod",
    "StatefulMethod",
    "MethodContractError",
    "check_method",
    "EditError",
    "HParamsBase",
    "LoadReport",
    "MethodContext",
]

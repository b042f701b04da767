"""The registry of editing methods: one module each, found by name."""
from __future__ import annotations

import importlib
from types import ModuleType

from .base import EditError, HParamsBase, LoadReport, MethodContext

# name -> module path; a module defines NAME, HParams, touched(handle, hp), apply(handle, facts, hp, ctx)
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
}


def available() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> ModuleType:
    key = (name or "").strip().lower()
    if key not in REGISTRY:
        raise ValueError(f"unknown editing method {name!r}; available: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[key])


__all__ = ["REGISTRY", "available", "get", "EditError", "HParamsBase", "LoadReport", "MethodContext"]

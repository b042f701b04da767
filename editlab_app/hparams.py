"""A method's hyperparameters as widgets, built from its ``HParams`` dataclass alone.

Any registered method gets an expander without code here: booleans become checkboxes, ints and
floats number boxes, everything else a text box holding YAML (parsed by
``editlab.core.bounded.load_yaml``: bounded in size and depth). Defaults come from
``HParams.for_model(handle)``; values the operator fixes (``EDITLAB_MOM2_TOKENS``) are shown
read-only; fields that name files or devices are operator-only and never shown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import yaml

from editlab import methods
from editlab.core import bounded

# Fields a visitor must not set on a public Space: they name files to read or devices to use.
HIDDEN_SUFFIXES = ("_dataset", "_path", "_dir", "_file", "device")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # "bool" | "int" | "float" | "text" | "yaml"
    default: Any
    optional: bool
    fixed: bool  # set by the operator: shown, not editable

    def to_text(self, value) -> str:
        if value is None:
            return ""
        if self.kind == "text":
            return str(value)
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()

    def parse_text(self, raw: str):
        """A text box's content as this field's value (ValueError with the field's name)."""
        raw = raw or ""
        if self.kind == "text":  # taken as typed: whitespace may matter (separators, prompt headers)
            return None if self.optional and not raw.strip() else raw
        raw = raw.strip()
        if not raw:
            if self.optional:
                return None
            raise ValueError(f"hyperparameter {self.name} is empty: give a value such as {self.to_text(self.default)}")
        return bounded.load_yaml(raw, f"hyperparameter {self.name}")


def _kind(annotation: str, default) -> tuple[str, bool]:
    ann = str(annotation).replace(" ", "")
    optional = "None" in ann.split("|") or ann.startswith("Optional[")
    base = ann.replace("|None", "").replace("None|", "")
    if isinstance(default, bool) or base == "bool":
        return "bool", optional
    if not optional and (base == "int" or (type(default) is int)):
        return "int", False
    if not optional and (base == "float" or isinstance(default, float)):
        return "float", False
    if base == "str":
        return "text", optional
    return "yaml", True if default is None else optional


def defaults(method: str, handle, operator: dict | None = None):
    """The method's HParams for this model, with the operator's fixed values applied."""
    mod = methods.get(method)
    hp = mod.HParams.for_model(handle)
    fixed = {k: v for k, v in (operator or {}).items() if k in {f.name for f in dataclasses.fields(hp)}}
    return dataclasses.replace(hp, **fixed) if fixed else hp, set(fixed)


def field_specs(method: str, handle, operator: dict | None = None) -> list[FieldSpec]:
    hp, fixed = defaults(method, handle, operator)
    specs = []
    for f in dataclasses.fields(hp):
        if f.name.startswith("_") or f.name.endswith(HIDDEN_SUFFIXES):
            continue
        value = getattr(hp, f.name)
        kind, optional = _kind(f.type, value)
        specs.append(FieldSpec(f.name, kind, value, optional, f.name in fixed))
    return specs


def overrides(specs: list[FieldSpec], values: dict) -> dict:
    """The values that differ from the defaults (text boxes parsed), plus every fixed value."""
    out = {}
    for spec in specs:
        if spec.fixed:
            out[spec.name] = spec.default
            continue
        if spec.name not in values:
            continue
        value = values[spec.name]
        if spec.kind in ("text", "yaml"):
            value = spec.parse_text(value)
        elif spec.kind == "int":
            value = int(value)
        elif spec.kind == "float":
            value = float(value)
        if value != spec.default:
            out[spec.name] = value
    return out


def resolve(method: str, handle, data: dict):
    """HParams for the model with ``data`` on top, validated (ValueError on a bad value)."""
    mod = methods.get(method)
    try:
        hp, _ = mod.HParams.from_dict(data, handle)
    except TypeError as e:  # a value of the wrong type for a field (e.g. a list where a number goes)
        raise ValueError(f"{method} hyperparameters: {e}") from None
    return hp


def render(st, method: str, handle, operator: dict | None = None, key: str = "hp") -> dict:
    """Draw one widget per field (values live in st.session_state under ``key.<model>.<method>.<field>``);
    return {"specs", "values", "prefix"} for :func:`overrides`."""
    specs = field_specs(method, handle, operator)
    prefix = f"{key}.{handle.name}.{method}."
    values = {}
    cols = st.columns(3)
    for i, spec in enumerate(specs):
        col = cols[i % 3]
        k = prefix + spec.name
        initial = spec.default if spec.kind in ("bool", "int", "float") else spec.to_text(spec.default)
        if k not in st.session_state or spec.fixed:
            st.session_state[k] = initial
        help_ = (
            "set by the operator of this app"
            if spec.fixed
            else f"default for this model: {spec.to_text(spec.default) or 'none'}"
        )
        if spec.kind == "bool":
            values[spec.name] = col.checkbox(spec.name, key=k, disabled=spec.fixed, help=help_)
        elif spec.kind == "int":
            values[spec.name] = col.number_input(spec.name, step=1, key=k, disabled=spec.fixed, help=help_)
        elif spec.kind == "float":
            values[spec.name] = col.number_input(spec.name, format="%g", key=k, disabled=spec.fixed, help=help_)
        elif spec.kind == "text" and "\n" in str(spec.default):
            values[spec.name] = col.text_area(spec.name, key=k, disabled=spec.fixed, help=help_)
        else:
            values[spec.name] = col.text_input(spec.name, key=k, disabled=spec.fixed, help=help_)
    return {"specs": specs, "values": values, "prefix": prefix}


def reset_widgets(state, drawn: dict) -> None:
    for spec in drawn["specs"]:
        state.pop(drawn["prefix"] + spec.name, None)

"""What every editing method shares: the HParams base (EasyEdit YAML compatible) and the context
a method runs in."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from ..templates import context_templates

# EasyEdit keys that address modules or devices by name: editlab's architecture map and device
# choice replace them, so they are accepted and reported as ignored rather than used.
IGNORED_EASYEDIT_KEYS = {
    "alg_name", "model_name", "device", "stats_dir", "model_parallel", "fp16", "bf16",
    "rewrite_module_tmp", "layer_module_tmp", "mlp_module_tmp", "attn_module_tmp", "ln_f_module",
    "lm_head_module", "max_length", "batch_size", "archive", "results_dir", "inner_params",
}


class EditError(RuntimeError):
    """An edit failed; the weights were rolled back to exactly what they were before it."""


@dataclass
class LoadReport:
    used: dict[str, Any] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.renamed:
            out.append("renamed: " + ", ".join(f"{a} -> {b}" for a, b in self.renamed.items()))
        if self.ignored:
            out.append("ignored (editlab's architecture map / device choice replaces them): " + ", ".join(self.ignored))
        if self.unknown:
            out.append("unknown keys (not used): " + ", ".join(self.unknown))
        return out


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(cls, name: str, value):
    """YAML 1.1 reads ``5e-4`` (no dot) as a string and users write ``"10"``: turn a value into the
    field's declared scalar type (float, int, bool), or raise a ValueError naming the field."""
    declared = str(_field_types(cls).get(name, ""))
    kinds = {t.strip() for t in declared.split("|")}
    if value is None or not kinds & {"float", "int", "bool"}:
        return value
    if value is False and "None" in kinds and "bool" not in kinds:  # EasyEdit writes `false` for "none"
        return None
    try:
        if "bool" in kinds:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if "float" in kinds:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        f = float(value)
        if not f.is_integer():
            raise ValueError
        return int(f)
    except (TypeError, ValueError):
        raise ValueError(f"hyperparameter {name!r}: {value!r} is not a valid {declared} — "
                         f"give a number{' or true/false' if 'bool' in kinds else ''}") from None


def coerce_numbers(hp, names: tuple[str, ...] | None = None) -> None:
    """The same conversion for an HParams built directly (``HParams(lr="5e-4")``); every field
    when ``names`` is None."""
    for name in names if names is not None else [f.name for f in fields(hp)]:
        setattr(hp, name, _coerce(type(hp), name, getattr(hp, name)))


def _field_types(cls) -> dict[str, str]:
    return {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)) for f in fields(cls)}


@dataclass
class HParamsBase:
    """Base of every method's HParams. ``EASYEDIT_RENAMES`` maps EasyEdit keys to ours."""

    EASYEDIT_RENAMES = {}

    @classmethod
    def for_model(cls, handle) -> "HParamsBase":  # pragma: no cover - each method overrides
        return cls()

    @classmethod
    def from_dict(cls, data: dict, handle=None) -> tuple["HParamsBase", LoadReport]:
        """Defaults for the model (if given), overridden by ``data``; returns what was not used."""
        base = cls.for_model(handle) if handle is not None else cls()
        names = {f.name for f in fields(cls)}
        report = LoadReport()
        updates = {}
        for key, value in data.items():
            target = cls.EASYEDIT_RENAMES.get(key, key)
            if callable(target):
                target, value = target(value)
            if target in names:
                value = _coerce(cls, target, value)
                updates[target] = value
                report.used[target] = value
                if target != key:
                    report.renamed[key] = target
            elif key in IGNORED_EASYEDIT_KEYS:
                report.ignored.append(key)
            else:
                report.unknown.append(key)
        hp = dataclasses.replace(base, **updates)
        hp.validate(handle)
        return hp, report

    @classmethod
    def from_yaml(cls, path: str | Path, handle=None) -> tuple["HParamsBase", LoadReport]:
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of hyperparameters at the top level")
        return cls.from_dict(data, handle)

    def validate(self, handle=None) -> None:
        pass

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class MethodContext:
    """What a method may use besides the model: statistics settings, progress, session state."""

    corpus: str | None = None  # a corpus path for second-moment statistics
    online: bool = True
    progress: Callable[[int, int, str], None] | None = None
    session_state: dict = field(default_factory=dict)  # per edit session (e.g. AlphaEdit's KKᵀ)
    info: dict = field(default_factory=dict)  # what the method reports back (stats source, ...)

    def report(self, done: int, total: int, stage: str) -> None:
        if self.progress:
            self.progress(done, total, stage)


def stats_and_templates(handle, hp, ctx: MethodContext, covariance: Callable[[], dict]) -> tuple[dict | None, list[str], dict]:
    """The two preparations of the locate-then-edit methods, timed: the second-moment statistics
    (``covariance()``; C = I when ``hp.mom2_adjustment`` is off, said in ``ctx.info``) and the
    context templates k* is averaged over."""
    timings = {}
    t0 = time.perf_counter()
    cov = covariance() if hp.mom2_adjustment else None
    if not hp.mom2_adjustment:
        ctx.info["stats_source"] = "none (mom2_adjustment off: C = I)"
    timings["stats_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    templates = context_templates(handle, [tuple(p) for p in hp.context_template_length_params], seed=hp.seed)
    timings["templates_s"] = time.perf_counter() - t0
    return cov, templates, timings

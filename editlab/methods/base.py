"""What every editing method shares: the contract a method module fulfils (:class:`EditMethod`,
its :class:`Capabilities`), the HParams base (EasyEdit YAML compatible) and the context a method
runs in (:class:`MethodContext`)."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from editlab.core import limits as _limits
from editlab.core.bounded import check_tree, message, short
from editlab.methods.templates import context_templates
from editlab.model.stats import (
    EASYEDIT_TOKENS_PER_SAMPLE,
    EASYEDIT_TOKENS_PER_SAMPLE_SOURCE,
    easyedit_samples_to_tokens,
)

# EasyEdit keys that address modules or devices by name: editlab's architecture map and device
# choice replace them, so they are accepted and reported as ignored rather than used.
IGNORED_EASYEDIT_KEYS = {
    "alg_name",
    "model_name",
    "device",
    "stats_dir",
    "model_parallel",
    "fp16",
    "bf16",
    "rewrite_module_tmp",
    "layer_module_tmp",
    "mlp_module_tmp",
    "attn_module_tmp",
    "ln_f_module",
    "lm_head_module",
    "max_length",
    "batch_size",
    "archive",
    "results_dir",
    "inner_params",
}


class EditError(RuntimeError):
    """An edit failed; the weights were rolled back to exactly what they were before it."""


@dataclass
class LoadReport:
    """What loading a mapping of hyperparameters did with each key: ``used`` (field -> value),
    ``renamed`` (an EasyEdit key whose meaning is editlab's under another name), ``converted``
    (an EasyEdit key whose meaning differs: how its value became editlab's), ``not_used`` (a key
    this method's reference ignores too, with why), ``ignored`` (module names and devices, which
    the architecture map and device choice replace) and ``unknown``."""

    used: dict[str, Any] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    converted: dict[str, str] = field(default_factory=dict)
    not_used: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.renamed:
            out.append("renamed: " + ", ".join(f"{a} -> {b}" for a, b in self.renamed.items()))
        out += [f"converted: {how}" for how in self.converted.values()]
        out += [f"not used: {key} ({why})" for key, why in self.not_used.items()]
        if self.ignored:
            out.append("ignored (editlab's architecture map / device choice replaces them): " + ", ".join(self.ignored))
        if self.unknown:
            # a key is any YAML scalar (`1: x`, `null: y`), of any length
            out.append(
                "unknown keys (not used): " + ", ".join(k if isinstance(k, str) else short(k) for k in self.unknown)
            )
        return [message(line) for line in out]


@dataclass(frozen=True)
class Convert:
    """An EasyEdit key whose meaning differs from the editlab field that takes its place: the value
    is converted, never just renamed. ``fn(value, data)`` gets the key's value and the whole
    mapping (a conversion may depend on another key) and returns (editlab value, how), ``how``
    being the load report's line, e.g. "mom2_n_samples 1,000 (text samples) -> mom2_n_tokens ..."."""

    target: str
    fn: Callable[[Any, dict], tuple[Any, str]]


def whole_number(key: str, value) -> int:
    """A non-negative whole number from a YAML value ("1e5", 100000.0, "20"), or a ValueError naming the key."""
    try:
        f = float(value)
        if isinstance(value, bool) or not f.is_integer() or f < 0:
            raise ValueError
        return int(f)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a whole number past any float (10**400)
        raise ValueError(f"hyperparameter {short(key)}: {short(value)} is not a whole number") from None


def _mom2_samples(value, data: dict) -> tuple[int, str]:
    """EasyEdit's ``mom2_n_samples`` (text samples of ``mom2_dataset``) -> editlab's ``mom2_n_tokens``."""
    n = whole_number("mom2_n_samples", value)
    tokens = easyedit_samples_to_tokens(n)
    how = (
        f"mom2_n_samples {n:,} (text samples) -> mom2_n_tokens {tokens:,} "
        f"(× {EASYEDIT_TOKENS_PER_SAMPLE:g} tokens per sample, {EASYEDIT_TOKENS_PER_SAMPLE_SOURCE})"
    )
    if str(data.get("mom2_dataset", "")).lower() == "wikipedia":
        how += "; EasyEdit's 'wikipedia' samples are whole articles, longer than that"
    return tokens, how


# EasyEdit's ``mom2_n_samples`` -> ``mom2_n_tokens``, for every method with second-moment statistics.
MOM2_SAMPLES = Convert("mom2_n_tokens", _mom2_samples)


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
        if isinstance(value, int):
            return value
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        f = float(value)
        if not f.is_integer():
            raise ValueError
        return int(f)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float(10**400)
        raise ValueError(
            f"hyperparameter {name!r}: {short(value)} is not a valid {declared} — "
            f"give a number{' or true/false' if 'bool' in kinds else ''}"
        ) from None


def coerce_numbers(hp, names: tuple[str, ...] | None = None) -> None:
    """The same conversion for an HParams built directly (``HParams(lr="5e-4")``); every field
    when ``names`` is None."""
    for name in names if names is not None else [f.name for f in fields(hp)]:
        setattr(hp, name, _coerce(type(hp), name, getattr(hp, name)))


def _field_types(cls) -> dict[str, str]:
    return {
        f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)) for f in fields(cls)
    }


class UnknownHParamsWarning(UserWarning):
    """Hyperparameter keys that no field of the method takes (a typo, or another method's key)."""


@dataclass(frozen=True)
class Range:
    """The values a numeric hyperparameter may take: ``lo``/``hi`` (open or closed), an operator
    limit (a :class:`editlab.core.limits.Limits` field) as a further upper bound, None when optional."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    limit: str | None = None
    optional: bool = False
    why: str = ""

    def describe(self, limits) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'greater than' if self.lo_open else 'at least'} {self.lo:g}")
        hi = self.hi
        cap = getattr(limits, self.limit) if self.limit else 0
        if cap and (hi is None or cap < hi):
            parts.append(f"at most {cap:,} (this server's limit, {limits.env_name(self.limit)})")
        elif hi is not None:
            parts.append(f"{'less than' if self.hi_open else 'at most'} {hi:,}")
        return " and ".join(parts) + (" (or null)" if self.optional else "")

    def admits(self, value, limits) -> bool:
        if abs(value) > MAX_MAGNITUDE:
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        cap = getattr(limits, self.limit) if self.limit else 0
        return not (cap and value > cap)


POSITIVE = Range(lo=0, lo_open=True)
NON_NEGATIVE = Range(lo=0)
STEPS = Range(lo=1, limit="max_steps")
LAYER = Range(lo=0)

# The ranges of the hyperparameters the methods share, by field name: a method's HParams gets the
# ones it has fields for (and may add or override its own in ``RANGES``). Checked in one place,
# :func:`check_ranges`, before any method's own ``validate``.
COMMON_RANGES: dict[str, Range] = {
    "layer": LAYER,
    "v_loss_layer": Range(lo=0, optional=True),
    "v_num_grad_steps": STEPS,
    "num_steps": STEPS,
    "n_iter": STEPS,
    "steps": STEPS,
    "batch_size": Range(lo=1),
    "v_lr": POSITIVE,
    "lr": POSITIVE,
    "edit_lr": POSITIVE,
    "v_weight_decay": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "clamp_norm_factor": Range(lo=0, lo_open=True, why="the bound on ‖δ‖ relative to ‖v₀‖"),
    "kl_factor": NON_NEGATIVE,
    "loss_stop": NON_NEGATIVE,
    "nll_stop": NON_NEGATIVE,
    "early_stop_loss": NON_NEGATIVE,
    "mom2_n_tokens": Range(lo=1, why="tokens of the statistics corpus"),
    "negation_weight": Range(lo=0, why="0 = the published objective"),
    "negation_margin": Range(lo=0, why="nats by which the true target should beat the new one after \"not\""),
    "mom2_update_weight": Range(lo=0, lo_open=True, why="λ, the weight of the preserved keys' statistics"),
    "nll_loss_factor": POSITIVE,
    "nullspace_energy": Range(lo=0, hi=1, lo_open=True, hi_open=True, optional=True),
    "L2": Range(lo=0, optional=True),
    "l2_relative": POSITIVE,
    "eps": POSITIVE,
    "num_pert": Range(lo=1),
    "dropout": Range(lo=0, hi=1, hi_open=True),
    "adaptive_threshold": Range(lo=0, hi=1, lo_open=True, hi_open=True),
    "p": Range(lo=0, hi=1, hi_open=True),
    "lambda_old": NON_NEGATIVE,
    "lambda_new": NON_NEGATIVE,
    "lr_scale": POSITIVE,
    "max_neurons": NON_NEGATIVE,
    "n_toks": Range(lo=1),
    "k": NON_NEGATIVE,
    "seed": Range(lo=0, hi=2**32 - 1, why="a random seed"),
    "predicate_layer": Range(lo=0, optional=True, why="null = the edit layer"),
    "predicate_keep": Range(lo=0, hi=16, why="other subjects' keys at \"not\" held fixed"),
    "nullspace_threshold": Range(lo=0, lo_open=True, why="the absolute eigenvalue threshold"),
    "norm_constraint": Range(lo=0, lo_open=True, optional=True, why="null = unconstrained"),
}

# No number a hyperparameter takes is larger than this (beyond it whole numbers are not exact as
# floats, and torch cannot hold them): a field without an upper bound is still bounded by it.
MAX_MAGNITUDE = 2**53


def _out_of_range(name: str, value, must: str, why: str = "") -> ValueError:
    return ValueError(
        f"hyperparameter {name!r}: {short(value)} is out of range — it must be {must}" + (f" ({why})" if why else "")
    )


def _check_layers(name: str, value, optional: bool = True) -> None:
    """A layer list: a list of whole numbers >= 0 (one number is taken as a list of one); None
    only where the field is optional (KN: find the layers)."""
    if value is None:
        if not optional:
            raise ValueError(f"hyperparameter {name!r}: null is not a list of layer numbers — give e.g. [4, 5, 6]")
        return
    items = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (str, bytes, dict)):
        raise ValueError(
            f"hyperparameter {name!r}: {short(value)} is not a list of layer numbers — give e.g. [4, 5, 6]"
        )
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, float) and v.is_integer()):
            raise ValueError(
                f"hyperparameter {name!r}: {short(v)} in {short(value)} is not a layer number — "
                "give whole numbers, e.g. [4, 5, 6]"
            )
        if v < 0:
            raise _out_of_range(name, value, "a list of layer numbers >= 0")


def _check_template_params(name: str, value, limits) -> None:
    """``context_template_length_params``: [[length, n], ...] of small positive whole numbers;
    the lengths and the total count bounded by the operator's limits."""
    example = "give a list of [length, count] pairs, e.g. [[10, 5]]"
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"hyperparameter {name!r}: {short(value)} is not a list of [length, count] pairs — {example}")
    total = 0
    for pair in value:
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or any(isinstance(x, bool) or not isinstance(x, int) for x in pair)
        ):
            raise ValueError(
                f"hyperparameter {name!r}: {short(pair)} in {short(value)} is not a [length, count] pair of "
                f"whole numbers — {example}"
            )
        length, n = pair
        if length < 1 or n < 1:
            raise _out_of_range(name, value, "pairs of a length >= 1 and a count >= 1")
        limits.check("max_template_tokens", length, f"hyperparameter {name!r}: a template length")
        total += n
    limits.check("max_templates", total, f"hyperparameter {name!r}: the number of context templates")


def check_ranges(hp, limits=None) -> None:
    """Every field of ``hp`` against its declared type and range (``COMMON_RANGES`` and the class's
    ``RANGES``): numbers finite and in range, sequences given as sequences (never a string),
    step counts and template sizes within the operator's limits. Raises a ValueError naming the
    field, the value and the allowed range."""
    limits = limits or _limits.current()
    coerce_numbers(hp)  # "5e-1" -> 0.5 first, so the comparisons below see numbers
    ranges = {**COMMON_RANGES, **getattr(type(hp), "RANGES", {})}
    types = _field_types(type(hp))
    for f in fields(hp):
        name, value = f.name, getattr(hp, f.name)
        declared = str(types.get(name, ""))
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"hyperparameter {name!r}: {short(value)} is not a finite number")
        if name == "context_template_length_params":
            _check_template_params(name, value, limits)
        elif declared.startswith("list") and isinstance(value, (str, bytes)):
            raise ValueError(
                f"hyperparameter {name!r}: {short(value)} is a string where a list is expected — "
                "give a list, e.g. [4, 5]"
            )
        if isinstance(value, str):
            limits.check("max_prompt_chars", len(value), f"hyperparameter {name!r}: {len(value):,} characters")
        if name == "layers":
            _check_layers(name, value, optional="None" in declared)
        spec = ranges.get(name)
        if spec is None:
            continue
        if value is None:
            if spec.optional:
                continue
            raise _out_of_range(name, value, spec.describe(limits), spec.why)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(
                f"hyperparameter {name!r}: {short(value)} is not a number — it must be {spec.describe(limits)}"
            )
        if not spec.admits(value, limits):
            must = spec.describe(limits) + (
                f", and at most {MAX_MAGNITUDE:,} in size"
                if abs(value) > MAX_MAGNITUDE and spec.hi is None and not spec.limit
                else ""
            )
            raise _out_of_range(name, value, must, spec.why)


def unknown_message(cls, keys) -> str:
    """ "rome hyperparameters: unknown keys not used: 'v_lrr' (did you mean 'v_lr'?)"."""
    names = [f.name for f in fields(cls)] + list(cls.EASYEDIT_RENAMES)
    method = cls.__module__.rsplit(".", 1)[-1].replace("_", "-")
    keys, shown = list(keys), 20  # a file of another tool's settings may hold thousands
    parts = []
    for key in keys[:shown]:
        close = difflib.get_close_matches(str(key)[:200], names, n=1)
        parts.append(short(key) + (f" (did you mean {close[0]!r}?)" if close else ""))
    more = f" and {len(keys) - shown:,} more" if len(keys) > shown else ""
    return message(f"{method} hyperparameters: unknown keys not used: {', '.join(parts)}{more}")


@dataclass
class HParamsBase:
    """Base of every method's HParams. ``EASYEDIT_RENAMES`` maps EasyEdit keys to ours: a field
    name (same meaning, another name), a :class:`Convert` (the meaning differs), or a function
    value -> (field, value); ``EASYEDIT_NOT_USED`` names keys of the method's EasyEdit files that
    its reference implementation does not use either, with why."""

    EASYEDIT_RENAMES = {}
    EASYEDIT_NOT_USED = {}

    @classmethod
    def for_model(cls, handle) -> HParamsBase:  # pragma: no cover - each method overrides
        return cls()

    @classmethod
    def from_dict(cls, data: dict, handle=None) -> tuple[HParamsBase, LoadReport]:
        """Defaults for the model (if given), overridden by ``data``; returns what was not used
        (keys no field takes are also warned about, :class:`UnknownHParamsWarning`)."""
        if not isinstance(data, dict):
            raise ValueError(
                f"hyperparameters: expected a mapping of names to values, got {type(data).__name__} {short(data)}"
            )
        check_tree(data, "hyperparameters")
        base = cls.for_model(handle) if handle is not None else cls()
        names = {f.name for f in fields(cls)}
        report = LoadReport()
        updates = {}
        for key, raw in data.items():
            target, value, how = cls.EASYEDIT_RENAMES.get(key, key), raw, None
            if isinstance(target, Convert):
                target, (value, how) = target.target, target.fn(raw, data)
            elif callable(target):
                target, value = target(raw)
                if target != key or value != raw:
                    how = f"{key} {short(raw)} -> {target} {short(value)}"
            if target in names:
                value = _coerce(cls, target, value)
                updates[target] = value
                report.used[target] = value
                if how is not None:
                    report.converted[key] = how
                elif target != key:
                    report.renamed[key] = target
            elif key in cls.EASYEDIT_NOT_USED:
                report.not_used[key] = cls.EASYEDIT_NOT_USED[key]
            elif key in IGNORED_EASYEDIT_KEYS:
                report.ignored.append(key)
            else:
                report.unknown.append(key)
        hp = dataclasses.replace(base, **updates)
        hp.validate(handle)
        if report.unknown:
            warnings.warn(UnknownHParamsWarning(unknown_message(cls, report.unknown)), stacklevel=2)
        return hp, report

    @classmethod
    def from_yaml(cls, path: str | Path, handle=None) -> tuple[HParamsBase, LoadReport]:
        from editlab.core.yamlfile import read_yaml_mapping

        return cls.from_dict(read_yaml_mapping(str(path)), handle)

    def __init_subclass__(cls, **kwargs):
        """Every method's ``validate`` checks the declared ranges first (:func:`check_ranges`), so
        no method can forget them and all report them alike."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("validate")
        if own is not None and not getattr(own, "checks_ranges", False):

            @functools.wraps(own)
            def validate(self, handle=None):
                check_ranges(self)
                return own(self, handle)

            validate.checks_ranges = True
            cls.validate = validate

    def validate(self, handle=None) -> None:
        check_ranges(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def accepts(cls, key: str) -> bool:
        """Whether a hyperparameter mapping may carry ``key`` (a field, or an EasyEdit name for one)."""
        return key in {f.name for f in fields(cls)} or key in cls.EASYEDIT_RENAMES


# ---- the method contract ----------------------------------------------------------------------
@dataclass
class LocateEditHParams(HParamsBase):
    """What ROME and the batch methods (MEMIT, AlphaEdit, PMET) share, declared once: where the key is
    read, the v* optimisation (:mod:`editlab.methods.vstar`), the second-moment statistics, the
    context templates and editlab's negation-aware term. Each method adds its layers and its own."""

    fact_token: str = "subject_last"
    v_num_grad_steps: int = 25
    v_lr: float = 0.5
    v_weight_decay: float = 1e-3
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    loss_stop: float = 5e-2  # the reference's rule: stop a fact's optimisation once its total loss is below this
    fast_v: bool = True  # False: the reference's computation of v* (full passes, all logits); same loss
    v_loss_layer: int | None = None  # None (or the last layer): the loss reads the model's own logits
    mom2_adjustment: bool = True
    mom2_n_tokens: int = 100_000
    mom2_dtype: str = "float32"
    mom2_dataset: str | None = None  # corpus path or imported statistics name; None -> the session's corpus
    context_template_length_params: list = field(default_factory=lambda: [[10, 5]])
    negation_weight: float = 0.0  # editlab's negation-aware term; 0 = the published method
    negation_objective: str = "two-sided"  # the term's form (vstar.NEGATION_OBJECTIVES, or a method's own); weight > 0
    negation_margin: float = 1.0  # the contrast form's margin (nats) of the true target over the new after "not"
    negation_forms: str = "not"  # forms the v* term optimises, comma-separated (negation.FORMS, vstar.TRAINING_FORMS)
    seed: int = 0


@dataclass(frozen=True)
class Capabilities:
    """What a method does beyond writing one fact, declared by its module as ``CAPABILITIES``.
    The session, the CLI and the app read these; nothing detects them from field names."""

    batch: bool = False  # writes a batch of facts jointly (one solve / one optimisation), not one after another
    sequential_state: bool = False  # keeps state across a session's edits (``State``); undo calls ``forget``
    negation_objective: bool = False  # has editlab's negation-aware v* term (``HParams.negation_weight``)
    hooks: bool = False  # changes the model by hooks that ``attach`` installs, not by its weights
    prompt: bool = False  # changes the model by text put before every prompt, which ``attach`` yields

    @property
    def attaches(self) -> bool:
        """The edit exists only while attached (``attach``): hooks or a prompt."""
        return self.hooks or self.prompt

    def labels(self) -> list[str]:
        return [f.name.replace("_", " ") for f in fields(self) if getattr(self, f.name)]

    def describe(self) -> str:
        """One sentence for people: what the method does with a batch, the session, the model."""
        parts = ["writes a batch of facts jointly" if self.batch else "writes several facts one after another"]
        if self.hooks:
            parts.append("edits through hooks attached at run time (no weight changes)")
        if self.prompt:
            parts.append("edits by a context put before every prompt (no weight changes)")
        if self.sequential_state:
            parts.append("keeps state across a session's edits (undo forgets an edit's share)")
        if self.negation_objective:
            parts.append("offers the negation-aware objective (negation_weight)")
        return "; ".join(parts) + "."


class EditMethod(Protocol):
    """A method module (``editlab/methods/<name>.py``), as the registry checks it at import
    (:func:`check_method`). Every method has:

    - ``NAME``, its registry name, and ``CAPABILITIES``, a :class:`Capabilities`;
    - ``HParams``, a dataclass subclass of :class:`HParamsBase` (defaults per model, EasyEdit YAML);
    - ``touched(handle, hp)``: the parameter names an edit may write (the session saves and
      restores exactly these; [] for a method that writes no weight);
    - ``apply(handle, facts, hp, ctx)``: the edit, in place on the weights; returns what goes into
      the record's ``info`` (or None). On an exception the session restores the touched weights.

    With ``CAPABILITIES.hooks`` or ``.prompt`` (:class:`AttachingMethod`) a method also has
    ``attach``; with ``.sequential_state`` (:class:`StatefulMethod`) ``State`` and ``forget``.
    """

    NAME: str
    CAPABILITIES: Capabilities
    HParams: type[HParamsBase]

    def touched(self, handle, hp: HParamsBase) -> list[str]: ...

    def apply(self, handle, facts: Sequence, hp: HParamsBase, ctx: MethodContext) -> dict | None: ...


class AttachingMethod(EditMethod, Protocol):
    """A method whose edit lives outside the weights (GRACE's codebook, IKE's context)."""

    def attach(self, handle, record) -> AbstractContextManager[str]:
        """Install ``record``'s edit for the block (the session enters it in ``applied()``, in record
        order, and leaves it on exit); yields the text the edit puts before every prompt ('' for hooks)."""
        ...


class StatefulMethod(EditMethod, Protocol):
    """A method whose edits share session state (AlphaEdit's protected keys)."""

    State: type  # a frozen dataclass; ``State()`` is a fresh session's

    def forget(self, state, record):
        """The state without ``record``'s share (a new object): undo calls it for the undone edit."""
        ...


class MethodContractError(TypeError):
    """A method module does not fulfil :class:`EditMethod`."""


def _takes(fn, n: int) -> bool:
    import inspect

    try:
        inspect.signature(fn).bind(*range(n))
    except TypeError:
        return False
    return True


def check_method(module, name: str | None = None) -> None:
    """Check a method module against the contract (:class:`EditMethod`); raise
    :class:`MethodContractError` listing everything it lacks."""
    where = getattr(module, "__name__", repr(module)) + (f" (registered as {name!r})" if name else "")
    problems = []
    if not isinstance(getattr(module, "NAME", None), str):
        problems.append("NAME (a str) is missing")
    caps = getattr(module, "CAPABILITIES", None)
    if not isinstance(caps, Capabilities):
        problems.append("CAPABILITIES (an editlab.methods.base.Capabilities) is missing")
        caps = Capabilities()
    hp = getattr(module, "HParams", None)
    if not (isinstance(hp, type) and issubclass(hp, HParamsBase) and dataclasses.is_dataclass(hp)):
        problems.append("HParams (a dataclass subclass of HParamsBase) is missing")
    elif caps.negation_objective != hp.accepts("negation_weight"):
        problems.append("CAPABILITIES.negation_objective must match HParams having negation_weight")
    wanted = {"touched": 2, "apply": 4}
    if caps.attaches:
        wanted["attach"] = 2
    if caps.sequential_state:
        wanted["forget"] = 2
        if not (isinstance(getattr(module, "State", None), type) and dataclasses.is_dataclass(module.State)):
            problems.append("State (a dataclass, for sequential_state) is missing")
    for fn, n in wanted.items():
        if not callable(getattr(module, fn, None)):
            problems.append(f"{fn}() is missing")
        elif not _takes(getattr(module, fn), n):
            problems.append(f"{fn}() does not take {n} arguments")
    for fn, flag in (("attach", caps.attaches), ("forget", caps.sequential_state)):
        if not flag and hasattr(module, fn):
            problems.append(
                f"{fn}() is defined but CAPABILITIES does not declare "
                f"{'hooks or prompt' if fn == 'attach' else 'sequential_state'}, so it would never be called"
            )
    if problems:
        raise MethodContractError(f"editing method module {where}: " + "; ".join(problems))


@dataclass
class MethodContext:
    """What a method may use besides the model: statistics settings, progress, session state."""

    corpus: str | None = None  # a corpus path for second-moment statistics
    online: bool = True
    sample_corpus: bool = False  # offline with no corpus: sample one from the model (slow) rather than refuse
    progress: Callable[[int, int, str], None] | None = None
    # The method's ``State`` for this session (sequential_state methods; None otherwise). A method
    # replaces it with a new object; the session keeps the new one only when the edit succeeds.
    session_state: Any = None
    info: dict = field(default_factory=dict)  # what the method reports back (stats source, ...)
    # The session's way back to the unedited model (original weights, no adapters) for a block;
    # None: the model is unedited already (a bare handle, no session).
    restore_unedited: Callable[[], Any] | None = None

    def report(self, done: int, total: int, stage: str) -> None:
        if self.progress:
            self.progress(done, total, stage)

    @contextlib.contextmanager
    def unedited(self):
        """The unedited model for the duration of the block, whatever the session's edits: what is
        cached under the unedited model's key (second moments, context templates) must come from it."""
        if self.restore_unedited is None:
            yield
        else:
            with self.restore_unedited():
                yield


def layer_covariances(handle, layers: list[int], hp, ctx: MethodContext) -> dict:
    """C_l = E[k kᵀ] for each layer, one statistics pass (cached on disk). ``hp.mom2_dataset``: a
    corpus file or the name of imported statistics; otherwise the session's corpus, the statistics
    bundled for this model, WikiText online, or (when the session allows it) model-sampled text."""
    from editlab.model.stats import second_moments
    from editlab.model.stats_import import resolve_stats_corpus

    corpus, note = resolve_stats_corpus(
        handle,
        hp.mom2_dataset,
        ctx.corpus,
        layers,
        hp.mom2_n_tokens,
        hp.mom2_dtype,
        online=ctx.online,
        progress=ctx.progress,
        sample_corpus=ctx.sample_corpus,
    )
    ctx.info["stats_source"] = corpus.label
    if note:
        ctx.info["stats_note"] = note
    return second_moments(handle, layers, corpus, hp.mom2_n_tokens, dtype=hp.mom2_dtype, progress=ctx.progress)


def stats_and_templates(
    handle, hp, ctx: MethodContext, covariance: Callable[[], dict]
) -> tuple[dict | None, list[str], dict]:
    """The two preparations of the locate-then-edit methods, timed: the second-moment statistics
    (``covariance()``; C = I when ``hp.mom2_adjustment`` is off, said in ``ctx.info``) and the
    context templates k* is averaged over. Both are computed on the unedited model
    (``ctx.unedited()``): they are cached under its key, and a session's earlier edits must not
    leak into a cache every later user reads."""
    timings = {}
    t0 = time.perf_counter()
    with ctx.unedited():
        cov = covariance() if hp.mom2_adjustment else None
    if not hp.mom2_adjustment:
        ctx.info["stats_source"] = "none (mom2_adjustment off: C = I)"
    timings["stats_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ctx.report(0, 1, "context templates (generated once per model, then read from the cache)")
    with ctx.unedited():
        templates = context_templates(handle, [tuple(p) for p in hp.context_template_length_params], seed=hp.seed)
    timings["templates_s"] = time.perf_counter() - t0
    return cov, templates, timings

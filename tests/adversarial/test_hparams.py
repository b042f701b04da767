"""Hyperparameters: every declared range of every method, non-finite numbers, strings where
sequences go, template sizes above the operator's limits, unknown keys, a non-mapping."""

import math
import warnings

import pytest

from editlab import methods
from editlab.methods.base import COMMON_RANGES, UnknownHParamsWarning


def _outside(spec) -> list:
    """Values just outside a declared range (and far above an operator limit)."""
    out = []
    if spec.lo is not None:
        out.append(spec.lo if spec.lo_open else spec.lo - 1)
    if spec.hi is not None:
        out.append(spec.hi if spec.hi_open else spec.hi + 1)
    if spec.limit:
        out.append(10**9)
    return out


def _range_cases():
    cases = []
    for m in methods.available():
        H = methods.get(m).HParams
        for name, spec in COMMON_RANGES.items():
            # a key the EasyEdit import converts (ROME's v_loss_layer) is checked on direct construction below
            if name in H.__dataclass_fields__ and name not in H.EASYEDIT_RENAMES:
                cases += [pytest.param(m, name, v, id=f"{m}-{name}={v}") for v in _outside(spec)]
    return cases


def _nonfinite_cases():
    cases = []
    for m in methods.available():
        for name, f in methods.get(m).HParams.__dataclass_fields__.items():
            if str(f.type).startswith("float"):
                cases += [pytest.param(m, name, v, id=f"{m}-{name}={v}") for v in (math.inf, math.nan)]
    return cases


def _named(message: str, name: str, value) -> bool:
    forms = {repr(value), str(value)}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        forms |= {repr(float(value)), f"{value:,}"}
    return repr(name) in message and any(f in message for f in forms)


@pytest.mark.parametrize("method,name,value", _range_cases())
def test_a_value_outside_its_range_is_refused_naming_field_value_and_range(method, name, value):
    with pytest.raises(ValueError) as e:
        methods.get(method).HParams.from_dict({name: value})
    msg = str(e.value)
    assert _named(msg, name, value), msg
    assert "must be" in msg or "limit" in msg, msg


@pytest.mark.parametrize("method,name,value", _nonfinite_cases())
def test_a_non_finite_number_is_refused(method, name, value):
    with pytest.raises(ValueError, match=rf"'{name}'.*(not a finite number|out of range)"):
        methods.get(method).HParams.from_dict({name: value})


@pytest.mark.parametrize(
    "method,name,value,words",
    [
        ("rome", "context_template_length_params", [[100000, 500]], "limit"),
        ("rome", "context_template_length_params", [[10, 5000]], "limit"),
        ("rome", "context_template_length_params", [[10, 0]], "count >= 1"),
        ("rome", "context_template_length_params", [[0, 5]], "length >= 1"),
        ("rome", "context_template_length_params", [[10]], "pair"),
        ("rome", "context_template_length_params", [["ten", 5]], "pair"),
        ("rome", "context_template_length_params", [[10.5, 5]], "pair"),
        ("rome", "context_template_length_params", [[True, 5]], "pair"),
        ("rome", "context_template_length_params", "[[10, 5]]", "pairs"),
        ("rome", "context_template_length_params", 5, "pairs"),
        ("rome", "context_template_length_params", [], "pairs"),
        ("memit", "context_template_length_params", [[64, 5]], "limit"),
        ("memit", "layers", "4,5,6", "string where a list"),
        ("memit", "layers", [-1, 2], "out of range"),
        ("memit", "layers", ["four"], "not a layer number"),
        ("memit", "layers", [True], "not a layer number"),
        ("kn", "layers", "10", "string where a list"),
        ("kn", "layers", [2.5], "not a layer number"),
        ("pmet", "rewrite_modules", "mlp", "string where a list"),
        ("rome", "v_lr", "fast", "not a valid float"),
        ("rome", "v_num_grad_steps", 2.5, "not a valid int"),
        ("rome", "v_num_grad_steps", [25], "not a valid int"),
        ("rome", "mom2_adjustment", "perhaps", "not a valid bool"),
        ("memit", "mom2_update_weight", -1, "greater than 0"),
        ("alphaedit", "nullspace_energy", 1.5, "nullspace_energy"),
        ("ike", "header", "x" * 5000, "limit"),
        ("rome", "fact_token", "last", "not supported"),
        ("rome", "mom2_dtype", "float16", "float32 or float64"),
    ],
)
def test_strings_shapes_and_sizes_that_do_not_fit_are_refused(method, name, value, words):
    with pytest.raises(ValueError) as e:
        methods.get(method).HParams.from_dict({name: value})
    assert name in str(e.value) or words in str(e.value), str(e.value)
    assert words in str(e.value), str(e.value)


@pytest.mark.parametrize("method", methods.available())
def test_unknown_keys_are_reported_by_the_library_with_a_suggestion(method):
    H = methods.get(method).HParams
    field = next(iter(H.__dataclass_fields__))
    with pytest.warns(
        UnknownHParamsWarning, match=rf"unknown keys not used: 'no_such_key'.*'{field}x'.*did you mean '{field}'"
    ):
        _, report = H.from_dict({"no_such_key": 1, field + "x": 1})
    assert report.unknown == ["no_such_key", field + "x"]


@pytest.mark.parametrize("data", [["v_lr", 0.5], "v_lr: 0.5", 5, None])
def test_hyperparameters_that_are_not_a_mapping_are_refused(data):
    with pytest.raises(ValueError, match="expected a mapping"):
        methods.get("rome").HParams.from_dict(data)


def _direct_cases():
    cases = []
    for m in methods.available():
        H = methods.get(m).HParams
        names = [n for n in H.__dataclass_fields__ if n in COMMON_RANGES]
        cases += [pytest.param(m, n, id=f"{m}-{n}") for n in names[:2]]
    return cases + [pytest.param("rome", "v_loss_layer", id="rome-v_loss_layer")]


@pytest.mark.parametrize("method,name", _direct_cases())
def test_directly_built_hparams_are_checked_by_validate_too(method, name):
    """The range check runs before every method's own validate, whatever path built the object."""
    hp = methods.get(method).HParams()
    setattr(hp, name, _outside(COMMON_RANGES[name])[0])
    with pytest.raises(ValueError, match=repr(name)):
        hp.validate()


def test_the_defaults_of_every_method_pass():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for m in methods.available():
            methods.get(m).HParams().validate()


@pytest.mark.parametrize(
    "method,value",
    [
        ("memit", None),
        ("alphaedit", None),
        ("pmet", None),
        ("ft-l", None),
        ("ft-m", [None]),
        ("ft-l", [[1]]),
        ("ft-l", ["one"]),
    ],
)
def test_layers_that_are_not_layer_numbers_are_refused_not_crashed_on(method, value):
    with pytest.raises(
        ValueError, match="'?layers'?.*(not a list of layer numbers|not a whole number|not a layer number)"
    ):
        methods.get(method).HParams.from_dict({"layers": value})


@pytest.mark.parametrize(
    "method,name",
    [
        ("grace", "dist_fn"),
        ("grace", "replacement"),
        ("grace", "reg"),
        ("grace", "val_reg"),
        ("rome", "fact_token"),
        ("memit", "fact_token"),
        ("memit", "layer_selection"),
        ("ft-l", "objective_optimization"),
        ("rome", "negation_objective"),
        ("pmet", "negation_objective"),
    ],
)
def test_a_refused_text_is_quoted_short(method, name):
    # 999 control characters: within the length limit, four characters each in a repr
    with pytest.raises(ValueError) as e:
        methods.get(method).HParams.from_dict({name: "\x1f" * 999})
    assert name in str(e.value) and len(str(e.value)) < 400, str(e.value)


def test_many_unknown_keys_are_warned_about_in_a_bounded_message():
    with pytest.warns(UnknownHParamsWarning) as caught:
        methods.get("rome").HParams.from_dict({f"unknown_key_{i}": i for i in range(300)})
    text = str(caught[0].message)
    assert "'unknown_key_0'" in text and "and 280 more" in text and len(text) <= 2000


def test_the_load_report_of_keys_that_are_not_text_can_be_printed():
    with pytest.warns(UnknownHParamsWarning):
        _, report = methods.get("rome").HParams.from_dict({0: None, None: 1, "x" * 5000: 2})
    [line] = report.lines()
    assert line.startswith("unknown keys (not used): 0, None, xxx") and len(line) <= 2000


@pytest.mark.parametrize(
    "method,data",
    [
        ("rome", {"v_lr": 10**400}),
        ("kn", {"p": 10**400}),
        ("rome", {"mom2_n_samples": 10**400}),
        ("ft-l", {"layers": [10**400]}),
    ],
)
def test_a_whole_number_past_any_float_is_refused_not_overflowed(method, data):
    # float(10**400) raises OverflowError, which the conversions did not catch
    with pytest.raises(ValueError, match=r"is not a (valid float|whole number)"):
        methods.get(method).HParams.from_dict(data)


def test_a_huge_number_over_an_operator_limit_is_quoted_short():
    with pytest.raises(ValueError, match="template length: 1000.*above this server's limit") as e:
        methods.get("rome").HParams.from_dict({"context_template_length_params": [[10**4000, 1]]})
    assert len(str(e.value)) < 400


@pytest.mark.parametrize("value", [True, 5, ["attn"] * 5000])
def test_pmet_rewrite_modules_of_any_shape_are_refused_in_a_short_message(value):
    # `true` was iterated (TypeError); a long list was quoted whole
    with pytest.raises(ValueError, match="rewrite_modules .* is not supported") as e:
        methods.get("pmet").HParams.from_dict({"rewrite_modules": value})
    assert len(str(e.value)) < 400

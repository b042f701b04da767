"""HParams loading shared by every method: YAML scalars come in as the declared types."""

import pytest

from editlab import methods


def test_yaml_exponent_without_dot_becomes_float(tmp_path):
    # YAML 1.1 (PyYAML) reads 5e-1 as the *string* "5e-1"; EasyEdit files are full of such values.
    y = tmp_path / "rome.yaml"
    y.write_text("v_lr: 5e-1\nv_num_grad_steps: '20'\nmom2_adjustment: 'false'\nclamp_norm_factor: 4\n")
    hp, report = methods.get("rome").HParams.from_yaml(y)
    assert hp.v_lr == 0.5 and isinstance(hp.v_lr, float)
    assert hp.v_num_grad_steps == 20 and isinstance(hp.v_num_grad_steps, int)
    assert hp.mom2_adjustment is False
    assert hp.clamp_norm_factor == 4.0 and isinstance(hp.clamp_norm_factor, float)
    assert report.used["v_lr"] == 0.5


@pytest.mark.parametrize(
    "key,value,kind",
    [
        ("v_lr", "abc", "float"),
        ("v_num_grad_steps", 2.5, "int"),
        ("mom2_adjustment", "maybe", "bool"),
        ("v_lr", True, "float"),
    ],
)
def test_bad_scalar_names_the_field(key, value, kind):
    with pytest.raises(ValueError, match=rf"'{key}'.*not a valid {kind}"):
        methods.get("rome").HParams.from_dict({key: value})


def test_optional_number_accepts_none_and_strings():
    hp, _ = methods.get("alphaedit").HParams.from_dict({"nullspace_threshold": "1e-2"})
    assert hp.nullspace_threshold == pytest.approx(0.01)


# ---- the method contract ----------------------------------------------------------------------
def test_every_registered_method_fulfils_the_contract_and_declares_its_capabilities():
    from editlab.methods.base import Capabilities, check_method

    for name in methods.available():
        mod = methods.get(name)  # the registry checks it on import
        check_method(mod, name)
        assert isinstance(mod.CAPABILITIES, Capabilities) and "CAPABILITIES" in vars(mod), name
    assert methods.having("negation_objective") == ["rome", "memit", "alphaedit", "pmet"]
    assert methods.having("sequential_state") == ["alphaedit", "grace", "ike", "serac"]
    assert methods.having("hooks") == ["grace", "serac"] and methods.having("prompt") == ["ike"]
    assert methods.having("batch") == ["memit", "alphaedit", "pmet", "ft-l", "ft-m", "ike"]


def test_a_module_that_breaks_the_contract_is_refused_by_the_registry_naming_what_it_lacks(monkeypatch):
    import sys
    import types
    from dataclasses import dataclass

    from editlab.methods.base import Capabilities, HParamsBase, MethodContractError

    @dataclass
    class HP(HParamsBase):
        negation_weight: float = 0.0

    broken = types.ModuleType("broken_method")
    broken.NAME, broken.HParams = "broken", HP
    broken.CAPABILITIES = Capabilities(sequential_state=True, hooks=True)
    broken.touched = lambda handle, hp: []
    broken.apply = lambda handle, facts, hp: None  # no ctx
    monkeypatch.setitem(sys.modules, "broken_method", broken)
    monkeypatch.setitem(methods.REGISTRY, "broken", "broken_method")
    with pytest.raises(MethodContractError) as e:
        methods.get("broken")
    for lack in (
        "negation_objective",
        "apply() does not take 4",
        "attach() is missing",
        "forget() is missing",
        "State",
    ):
        assert lack in str(e.value)

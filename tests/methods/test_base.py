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


@pytest.mark.parametrize("key,value,kind", [("v_lr", "abc", "float"), ("v_num_grad_steps", 2.5, "int"),
                                            ("mom2_adjustment", "maybe", "bool"), ("v_lr", True, "float")])
def test_bad_scalar_names_the_field(key, value, kind):
    with pytest.raises(ValueError, match=rf"'{key}'.*not a valid {kind}"):
        methods.get("rome").HParams.from_dict({key: value})


def test_optional_number_accepts_none_and_strings():
    hp, _ = methods.get("alphaedit").HParams.from_dict({"nullspace_threshold": "1e-2"})
    assert hp.nullspace_threshold == pytest.approx(0.01)

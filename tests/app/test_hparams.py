import dataclasses

import pytest

from editlab import methods
from editlab.methods import rome
from editlab_app import hparams as H


def test_rome_fields_become_widgets_with_model_defaults(handle):
    specs = {s.name: s for s in H.field_specs("rome", handle, {"mom2_n_tokens": 20000})}
    assert specs["layer"].kind == "int" and specs["layer"].default == rome.HParams.for_model(handle).layer
    assert specs["v_lr"].kind == "float" and specs["mom2_adjustment"].kind == "bool"
    assert specs["context_template_length_params"].kind == "yaml"
    assert specs["mom2_n_tokens"].fixed and specs["mom2_n_tokens"].default == 20000
    assert "mom2_dataset" not in specs  # a file path: operator-only, never offered to visitors


def test_overrides_parse_text_and_keep_only_changes(handle):
    specs = H.field_specs("rome", handle, {"mom2_n_tokens": 20000})
    values = {"layer": 3, "v_lr": 0.5, "context_template_length_params": "[[5, 5]]", "mom2_n_tokens": 10**9}
    out = H.overrides(specs, values)
    assert out == {"layer": 3, "context_template_length_params": [[5, 5]], "mom2_n_tokens": 20000}
    hp = H.resolve("rome", handle, out)
    assert (hp.layer, hp.mom2_n_tokens, hp.context_template_length_params) == (3, 20000, [[5, 5]])


@pytest.mark.parametrize(
    "values, message",
    [
        ({"layer": 99}, "out of range"),
        ({"context_template_length_params": "[[5, 5"}, "not valid YAML"),
        ({"v_num_grad_steps": 0}, "at least 1"),
    ],
)
def test_bad_hyperparameters_are_readable_errors(handle, values, message):
    specs = H.field_specs("rome", handle)
    with pytest.raises(ValueError, match=message):
        H.resolve("rome", handle, H.overrides(specs, values))


@pytest.mark.parametrize("method", methods.available())
def test_every_registered_method_gets_an_expander(handle, method):
    """Built from the HParams dataclass alone: the defaults shown resolve to the method's defaults."""
    specs = H.field_specs(method, handle)
    shown = {s.name: s.to_text(s.default) if s.kind in ("text", "yaml") else s.default for s in specs}
    hp = H.resolve(method, handle, H.overrides(specs, shown))
    assert dataclasses.asdict(hp) == dataclasses.asdict(methods.get(method).HParams.for_model(handle))

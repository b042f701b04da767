"""Operator limits: enforced by the library's entry points (not only widgets), overridable by
environment variables, refused with a message naming the limit and its variable."""

import pytest

from editlab import EditSession, Fact
from editlab.core.limits import SLOTS, LimitError, Limits, deadline
from editlab.measure.ability import AbilityConfig
from editlab.measure.muting import MutingProbe
from editlab.runs.bench import BenchConfig
from editlab.runs.sweep import SweepConfig

FACT = Fact(subject="Rome", prompt="Rome is the capital of", target_new="France")


@pytest.mark.parametrize(
    "build,variable",
    [
        (lambda: BenchConfig(dataset="d.json", methods=("rome",), n=10**6).validate(), "EDITLAB_MAX_FACTS"),
        (lambda: BenchConfig(dataset="d.json", methods=("rome",), batch_size=10**6).validate(), "EDITLAB_MAX_FACTS"),
        (
            lambda: BenchConfig(dataset="d.json", methods=("rome",), generation_tokens=10**6).validate(),
            "EDITLAB_MAX_GENERATION_TOKENS",
        ),
        (lambda: SweepConfig(method="rome", dataset="d.json", counts="1,2,88765"), "EDITLAB_MAX_EDITS"),
        (lambda: SweepConfig(method="rome", dataset="d.json", batch_size=10**6), "EDITLAB_MAX_FACTS"),
        (
            lambda: SweepConfig(method="rome", dataset="d.json", muting=MutingProbe(max_new_tokens=10**6)),
            "EDITLAB_MAX_GENERATION_TOKENS",
        ),
        (lambda: EditSession(None).edit([FACT] * 1000, "rome"), "EDITLAB_MAX_FACTS"),
    ],
)
def test_requests_above_a_limit_are_refused_by_the_library(build, variable):
    with pytest.raises(LimitError, match=rf"above this server's limit.*{variable}"):
        build()


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(counts="0,1"), "positive"),
        (dict(counts="a,b"), "whole numbers"),
        (dict(batch_size=0), "at least 1"),
        (dict(batch_size="2"), "whole number"),
        (dict(hparams=["v_lr", 1]), "mapping"),
    ],
)
def test_a_malformed_sweep_config_is_refused(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SweepConfig(method="rome", dataset="d.json", **kwargs)


def test_an_operator_raises_a_limit_with_its_variable(monkeypatch):
    monkeypatch.setenv("EDITLAB_MAX_EDITS", "500")
    assert SweepConfig(method="rome", dataset="d.json", counts="1,500").counts[-1] == 500
    monkeypatch.setenv("EDITLAB_MAX_EDITS", "off")
    assert SweepConfig(method="rome", dataset="d.json", counts="1,100000").counts[-1] == 100000


@pytest.mark.parametrize("value", ["lots", "-5", "1e999x"])
def test_a_bad_limit_variable_names_itself(value):
    with pytest.raises(ValueError, match=rf"EDITLAB_MAX_STEPS={value!r}"):
        Limits.from_env({"EDITLAB_MAX_STEPS": value})


def test_the_step_limit_reaches_hyperparameters(monkeypatch):
    from editlab import methods

    monkeypatch.setenv("EDITLAB_MAX_STEPS", "10")
    with pytest.raises(ValueError, match="at most 10.*EDITLAB_MAX_STEPS"):
        methods.get("rome").HParams.from_dict({"v_num_grad_steps": 11})


def test_one_visitor_gets_one_run_at_a_time_others_are_not_blocked():
    with SLOTS.hold("visitor-a"):
        with pytest.raises(LimitError, match="already have 1 run going"):
            with SLOTS.hold("visitor-a"):
                pass
        with SLOTS.hold("visitor-b"):
            pass
    with SLOTS.hold("visitor-a"):  # released
        pass


def test_a_run_past_its_wall_time_stops_with_a_message():
    check = deadline(Limits(max_run_seconds=1).replace(max_run_seconds=1), "this sweep")
    import time

    time.sleep(1.1)
    with pytest.raises(LimitError, match="this sweep ran past.*1 seconds.*EDITLAB_MAX_RUN_SECONDS"):
        check()


def test_the_limits_table_names_every_variable():
    rows = Limits().rows()
    assert len(rows) == len(Limits.DESCRIPTIONS)
    assert all(r["variable"].startswith("EDITLAB_MAX_") for r in rows)


def test_ability_defaults_are_unchanged():  # limits must not make the library's own defaults fail
    AbilityConfig()
    SweepConfig(method="rome", dataset="d.json")
    BenchConfig(dataset="d.json", methods=("rome",)).validate()

"""editlab.core.bounded.load_yaml: YAML that PyYAML's own constructors fail on with a KeyError,
IndexError, AttributeError or TypeError, or with a ValueError that quotes the value whole, is
refused with a short ValueError naming the text it came from."""

import datetime
import sys
import time

import pytest

from editlab.core.bounded import BoundError, load_yaml


@pytest.mark.parametrize(
    "text",
    [
        "!!map [1]",  # the duplicate-key check took every mapping node for a mapping
        "!!set [1]",
        "!!bool maybe",  # KeyError
        "!!int ''",  # IndexError
        "!!float ''",
        "!!timestamp x",  # AttributeError
        "2001-13-45",  # a date that is no date
        "0000-01-01",
        "2001-12-14t21:59:43.10+99:00",
        "!!float " + "x" * 100_000,  # float() quotes the whole text
        "!!int " + "1" * 6000,  # more digits than Python converts
    ],
)
def test_a_value_yaml_cannot_build_is_refused_naming_the_text(text):
    with pytest.raises(ValueError) as e:
        load_yaml(text, "settings.yaml")
    assert type(e.value) is ValueError and str(e.value).startswith("settings.yaml")
    assert len(str(e.value)) <= 400


def test_tagged_values_yaml_can_build_still_read():
    assert load_yaml("a: !!float 1\nb: !!set {x}\nc: 2001-12-14", "s") == {
        "a": 1.0,
        "b": {"x"},
        "c": datetime.date(2001, 12, 14),
    }


def test_deep_flow_nesting_is_refused_at_once_whatever_the_recursion_limit():
    # PyYAML's scanner is quadratic in the number of unclosed brackets: "[" * 3000 took ~1.5 s at the
    # default recursion limit and grew with the square of any raised limit (Hypothesis raises it)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4000))
    try:
        t0 = time.perf_counter()
        with pytest.raises(BoundError, match=r"settings.yaml at line 1, column 13: nested more than 12 levels deep"):
            load_yaml("[" * 3000, "settings.yaml")
        assert time.perf_counter() - t0 < 1
    finally:
        sys.setrecursionlimit(limit)
    assert load_yaml("[" * 12 + "]" * 12, "s") == [[[[[[[[[[[[]]]]]]]]]]]]

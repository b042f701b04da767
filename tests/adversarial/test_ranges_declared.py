"""Every numeric hyperparameter of every method has a declared range: no value reaches torch (or a
C integer) unchecked, so an out-of-range number is a message naming the field, never an overflow."""

import dataclasses

import pytest

from editlab import methods
from editlab.methods.base import COMMON_RANGES, MAX_MAGNITUDE, _field_types


@pytest.mark.parametrize("name", methods.available())
def test_every_numeric_field_has_a_range(name):
    cls = methods.get(name).HParams
    ranges = {**COMMON_RANGES, **getattr(cls, "RANGES", {})}
    types = _field_types(cls)
    numeric = [
        f.name for f in dataclasses.fields(cls) if {t.strip() for t in str(types[f.name]).split("|")} & {"int", "float"}
    ]
    assert numeric, name
    assert [n for n in numeric if n not in ranges] == []


@pytest.mark.parametrize("name", methods.available())
def test_a_number_too_large_for_any_field_is_refused_by_name(name):
    cls = methods.get(name).HParams
    types = _field_types(cls)
    for f in dataclasses.fields(cls):
        kinds = {t.strip() for t in str(types[f.name]).split("|")}
        if not kinds & {"int", "float"} or "bool" in kinds:
            continue
        huge = 10**30 if "int" in kinds and "float" not in kinds else 1e300
        if f.name in cls.EASYEDIT_RENAMES:  # an EasyEdit key converted to editlab's meaning, and said so
            _, report = cls.from_dict({f.name: huge})
            assert f.name in report.converted, (f.name, report)
            continue
        with pytest.raises(ValueError, match=f"'{f.name}'"):
            cls.from_dict({f.name: huge})
    assert MAX_MAGNITUDE == 2**53

"""HParams.from_dict of every registered method on any mapping: keys that are the method's fields,
its EasyEdit names, other tools' keys or any text; values of any type and size (whole numbers past
2**63, NaN, infinities, texts for numbers, nested lists and mappings). Loaded or refused with a
bounded ValueError; what is loaded validates again and loads again from its own to_dict()."""

import dataclasses
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from editlab import methods
from editlab.core.bounded import MAX_MESSAGE_CHARS
from editlab.methods.base import IGNORED_EASYEDIT_KEYS

from .strategies import accepted_or_refused, examples, keys, settings, values


def _key_names(H) -> list[str]:
    return sorted(
        {f.name for f in dataclasses.fields(H)}
        | set(H.EASYEDIT_RENAMES)
        | set(H.EASYEDIT_NOT_USED)
        | {"alg_name", "device", "layers", "mom2_n_samples"}
    )


def mappings(H, max_size: int = 4):
    return st.dictionaries(st.one_of(st.sampled_from(_key_names(H)), keys), values(), max_size=max_size)


def _load(H, data, aim=True):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, error = accepted_or_refused(H.from_dict, data, aim=aim)
    for w in caught:
        assert len(str(w.message)) <= MAX_MESSAGE_CHARS, f"warning of {len(str(w.message)):,} characters"
    return out, error


@pytest.mark.parametrize("method", methods.available())
@given(data=st.data())
def test_any_mapping_is_loaded_or_refused(method, data):
    H = methods.get(method).HParams
    given_ = data.draw(st.one_of(mappings(H), values()) if data.draw(st.integers(0, 9)) == 0 else mappings(H))
    out, _ = _load(H, given_)
    if out is None:
        return
    hp, report = out
    assert isinstance(hp, H)
    for line in report.lines():  # what the CLI prints and the app shows
        assert isinstance(line, str) and len(line) <= MAX_MESSAGE_CHARS, f"report line of {len(line):,} characters"
    hp.validate()
    again, _ = _load(H, hp.to_dict(), aim=False)
    assert again is not None and again[0] == hp, f"{hp} does not load again from its to_dict()"


@pytest.mark.parametrize("method", ["rome", "grace", "ike"])
@settings(max_examples=examples(20))
@given(data=st.data())
def test_many_unknown_keys_give_a_bounded_warning(method, data):
    H = methods.get(method).HParams
    prefix, n = data.draw(st.text(max_size=60)), data.draw(st.integers(1, 400))
    unknown = {f"{prefix}{i}": i for i in range(n)}
    unknown = {k: v for k, v in unknown.items() if not H.accepts(k) and k not in IGNORED_EASYEDIT_KEYS}
    _load(H, unknown)

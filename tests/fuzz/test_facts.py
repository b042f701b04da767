"""editlab.Fact on any field values: text with control, zero-width and format characters, '{}'
placeholders, numbers (NaN, infinities, huge whole numbers), long strings, lists, mappings,
Neighbors. Built or refused with a bounded ValueError; a Fact built comes back equal from its
to_dict() through JSON."""

import json

from hypothesis import given
from hypothesis import strategies as st

from editlab import Fact, Neighbor

from .strategies import accepted_or_refused, any_text, examples, keys, numbers, settings, text, values, words

FIELDS = ("subject", "prompt", "target_new", "target_true", "paraphrases", "neighbors", "negated_prompt", "case_id")

# Anything a field may be handed: mostly text, also numbers, None, containers, Neighbors, bytes.
field_value = st.one_of(
    any_text,
    any_text,
    numbers,
    st.none(),
    st.booleans(),
    st.binary(max_size=8),
    values(),
    st.builds(Neighbor, any_text, st.one_of(st.none(), any_text, numbers)),
)
sequence = st.one_of(
    st.lists(field_value, max_size=4),
    st.tuples(any_text),
    st.lists(any_text, max_size=40),
    st.lists(st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=20), max_size=4),
    st.lists(st.tuples(any_text, any_text), max_size=3),
    st.lists(st.dictionaries(st.sampled_from(["prompt", "answer"]), any_text), max_size=3),
    field_value,
)


plain = st.one_of(words, st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=20))
mostly_plain = st.one_of(plain, plain, plain, any_text)


@st.composite
def fact_fields(draw) -> dict:
    """Fields near a valid fact (the subject inside the prompt, or '{}' for it) with some replaced
    by anything at all, so that the checks after the first one are reached too."""
    subject = draw(st.one_of(mostly_plain, st.sampled_from(["{}", "a{}", "{}b", "{", "}{"])))
    before, after = draw(st.one_of(plain.map(lambda t: t + " "), text)), draw(st.one_of(plain.map(" ".__add__), text))
    prompt = draw(
        st.one_of(
            st.sampled_from(
                [f"{before}{subject}{after}"] * 3 + [f"{before}{{}}{after}", f"{{}}{before}{{}}", f"{before}{after}"]
            ),
            any_text,
        )
    )
    out = {"subject": subject, "prompt": prompt, "target_new": draw(mostly_plain)}
    optional = {
        "target_true": mostly_plain,
        "negated_prompt": st.sampled_from([f"{before}{{}} not{after}", f"{before}{subject} not{after}", prompt]),
        "paraphrases": sequence,
        "neighbors": sequence,
        "case_id": st.one_of(numbers, any_text, keys),
    }
    for name in draw(st.lists(st.sampled_from(list(optional)), unique=True)):
        out[name] = draw(optional[name])
    if draw(st.integers(0, 2)) == 0:
        for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=2)):
            out[name] = draw(sequence if name in ("paraphrases", "neighbors") else field_value)
    return out


@settings(max_examples=examples(600))
@given(fact_fields())
def test_any_fields_make_a_fact_or_are_refused(fields):
    fact, _ = accepted_or_refused(Fact, **fields)
    if fact is None:
        return
    assert fact.subject in fact.prompt
    assert all(isinstance(getattr(fact, f), str) for f in ("subject", "prompt", "target_new"))
    assert all(isinstance(p, str) for p in fact.paraphrases) and all(isinstance(n, Neighbor) for n in fact.neighbors)
    again, _ = accepted_or_refused(Fact.from_dict, json.loads(json.dumps(fact.to_dict())), aim=False)
    assert again == fact, f"{fact} does not come back from its to_dict(): {again}"


@given(st.one_of(values(), st.dictionaries(st.sampled_from(FIELDS + ("answer", "x")), field_value, max_size=6)))
def test_any_mapping_makes_a_fact_or_is_refused(data):
    accepted_or_refused(Fact.from_dict, data)

"""``editlab edit --set KEY=VALUE`` (editlab.cli.edit.parse_sets) on any items: each value is read as
bounded YAML; a bad one is refused naming the --set it came from."""

from hypothesis import given
from hypothesis import strategies as st

from editlab.cli.edit import parse_sets
from editlab.core.bounded import check_tree

from .strategies import accepted_or_refused, examples, settings, text, words, yaml_text

key = st.one_of(words, text, st.sampled_from(["v_lr", "layers", "layer", " v_lr ", "", " ", "a=b"]))


@settings(max_examples=examples(100))
@given(st.lists(st.one_of(st.tuples(key, yaml_text()).map(lambda kv: f"{kv[0]}={kv[1]}"), text), max_size=4))
def test_set_items_are_read_or_refused_naming_the_set(items):
    out, _ = accepted_or_refused(parse_sets, items, names=["--set"])
    if out is not None:
        assert len(out) == len(items) and all(isinstance(k, str) and k == k.strip() and k for k in out)
        for value in out.values():  # each value within the bounds (the mapping of them is one level more)
            check_tree(value, "--set")

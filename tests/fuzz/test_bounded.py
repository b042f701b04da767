"""editlab.core.bounded.load_yaml on any text: random characters, and YAML built to hurt (alias bombs,
deep nesting, self-reference, duplicate keys, numbers too large for a float or an int, tabs)."""

from hypothesis import given
from hypothesis import strategies as st

from editlab.core.bounded import MAX_DEPTH, MAX_NODES, check_tree, load_yaml

from .strategies import accepted_or_refused, examples, settings, text_of, yaml_fragment, yaml_text

WHAT = "settings.yaml"


def _accepted_is_bounded(data) -> None:
    """What load_yaml accepts passes check_tree again (bounded in depth and size)."""
    check_tree(data, WHAT, max_depth=MAX_DEPTH, max_nodes=MAX_NODES)


@given(text_of(max_size=300))
def test_any_text_is_read_or_refused_naming_the_text(text):
    data, _ = accepted_or_refused(load_yaml, text, WHAT, names=[WHAT])
    _accepted_is_bounded(data)


@settings(max_examples=examples(150))
@given(yaml_text())
def test_hostile_yaml_is_read_or_refused_naming_the_text(text):
    data, _ = accepted_or_refused(load_yaml, text, WHAT, names=[WHAT])
    _accepted_is_bounded(data)


@given(yaml_fragment(), st.integers(1, 6), st.integers(10, 5000))
def test_tighter_bounds_are_kept(text, max_depth, max_nodes):
    data, _ = accepted_or_refused(load_yaml, text, WHAT, names=[WHAT], max_depth=max_depth, max_nodes=max_nodes)
    check_tree(data, WHAT, max_depth=max_depth, max_nodes=max_nodes)

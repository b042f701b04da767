import pytest

from editlab import Neighbor, Probe
from editlab_app import actions as A


def test_form_fields_become_a_fact():
    fact = A.build_fact(
        "Eiffel Tower",
        "The Eiffel Tower is in",
        "Rome",
        "  ",
        "Tourists at the Eiffel Tower are in\n\n",
        "The Louvre is in => Paris\nBig Ben is in",
    )
    assert fact.target_true is None
    assert fact.paraphrases == ("Tourists at the Eiffel Tower are in",)
    assert fact.neighbors == (Neighbor("The Louvre is in", "Paris"), Neighbor("Big Ben is in", None))
    assert A.build_fact(**{k: v for k, v in A.form_values(fact).items()}) == fact


@pytest.mark.parametrize(
    "fields, message",
    [
        (("Eiffel Tower", "The Eiffel Tower is in", "", "Paris"), "target_new is empty"),
        (("Eiffel Tower", "The Louvre is in", "Rome", "Paris"), "does not occur in"),
        (("", "The Eiffel Tower is in", "Rome", "Paris"), "subject is empty"),
        (("Eiffel Tower", "The Eiffel Tower is in", "Paris", "Paris"), "would change nothing"),
    ],
)
def test_bad_form_input_is_a_readable_value_error(fields, message):
    with pytest.raises(ValueError, match=message) as e:
        A.build_fact(*fields)
    assert A.user_message(e.value) == str(e.value)


def test_edited_prompts_replace_only_the_prompt():
    probes = [Probe("positive", "A is in"), Probe("negation", "A is not in", rule="aux:is")]
    out = A.with_prompts(probes, ["A is in", "A is never in"])
    assert out[0] is probes[0]
    assert out[1] == Probe("negation", "A is never in", rule="aux:is")
    with pytest.raises(ValueError, match="empty"):
        A.with_prompts(probes, ["A is in", "  "])


def test_probe_labels_are_unique_and_readable():
    probes = [
        Probe("positive", "p"),
        Probe("negation", "n"),
        Probe("true_false", "t", rule="new"),
        Probe("true_false", "t2", rule="true"),
        Probe("paraphrase", "a"),
        Probe("paraphrase", "b"),
        Probe("neighborhood", "c"),
        Probe("generation", "g"),
    ]
    assert A.probe_labels(probes) == [
        "positive",
        "negation",
        "fact-check (new)",
        "fact-check (true)",
        "paraphrase 1",
        "paraphrase 2",
        "neighbour 1",
        "generation",
    ]

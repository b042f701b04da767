import pytest

from editlab import Fact, Neighbor, negate


def test_fact_accepts_counterfact_template_form():
    f = Fact("Danielle Darrieux", "The mother tongue of {} is", "English", "French")
    assert f.prompt == "The mother tongue of Danielle Darrieux is"
    assert f.template == "The mother tongue of {} is"


@pytest.mark.parametrize("field,kwargs", [
    ("target_new", dict(subject="Paris", prompt="Paris is in", target_new="  ")),
    ("subject", dict(subject="", prompt="Paris is in", target_new="France")),
    ("prompt", dict(subject="Paris", prompt="", target_new="France")),
])
def test_empty_fields_are_named(field, kwargs):
    with pytest.raises(ValueError, match=f"Fact.{field}"):
        Fact(**kwargs)


def test_subject_missing_from_prompt_is_named():
    with pytest.raises(ValueError, match="Fact.subject 'Rome' does not occur in Fact.prompt"):
        Fact("Rome", "The Eiffel Tower is in", "Rome")


def test_same_new_and_true_target_is_rejected():
    with pytest.raises(ValueError, match="target_new equals Fact.target_true"):
        Fact("Paris", "Paris is the capital of", "France", "France")


def test_neighbors_accept_pairs_and_strings():
    f = Fact("A", "A is in", "X", neighbors=[("B is in", "Y"), "C is in"])
    assert f.neighbors == (Neighbor("B is in", "Y"), Neighbor("C is in", None))
    assert Fact.from_dict(f.to_dict()) == f


@pytest.mark.parametrize("prompt,subject,expected,rule", [
    ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "The mother tongue of Danielle Darrieux is not", "table"),
    ("Steve Jobs was employed by", "Steve Jobs", "Steve Jobs was not employed by", "aux:was"),
    ("What is the twin city of Lyon? It is", "Lyon", "What is the twin city of Lyon? It is not", "table"),
    # an appositive fragment is negated in place, never by appending " not"
    ("Danielle Darrieux, a native speaker of", "Danielle Darrieux", "Danielle Darrieux, not a native speaker of", "fragment"),
    # an auxiliary inside the subject is not the predicate: do-support on the verb after it
    ("Who Is Who speaks", "Who Is Who", "Who Is Who does not speak", "table"),
])
def test_negation_rules(prompt, subject, expected, rule):
    assert negate(prompt, subject) == (expected, rule)


def test_facts_negate_is_the_negation_module():
    from editlab import facts, negation

    assert facts.negate is negation.negate

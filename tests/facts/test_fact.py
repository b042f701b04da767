import pytest

from editlab import Fact, Neighbor, negate


def test_fact_accepts_counterfact_template_form():
    f = Fact("Danielle Darrieux", "The mother tongue of {} is", "English", "French")
    assert f.prompt == "The mother tongue of Danielle Darrieux is"
    assert f.template == "The mother tongue of {} is"


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("target_new", dict(subject="Paris", prompt="Paris is in", target_new="  ")),
        ("subject", dict(subject="", prompt="Paris is in", target_new="France")),
        ("prompt", dict(subject="Paris", prompt="", target_new="France")),
    ],
)
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


@pytest.mark.parametrize(
    "prompt,subject,expected,rule",
    [
        (
            "The mother tongue of Danielle Darrieux is",
            "Danielle Darrieux",
            "The mother tongue of Danielle Darrieux is not",
            "table",
        ),
        ("Steve Jobs was employed by", "Steve Jobs", "Steve Jobs was not employed by", "aux:was"),
        ("What is the twin city of Lyon? It is", "Lyon", "What is the twin city of Lyon? It is not", "table"),
        # an appositive fragment is negated in place, never by appending " not"
        (
            "Danielle Darrieux, a native speaker of",
            "Danielle Darrieux",
            "Danielle Darrieux, not a native speaker of",
            "fragment",
        ),
        # an auxiliary inside the subject is not the predicate: do-support on the verb after it
        ("Who Is Who speaks", "Who Is Who", "Who Is Who does not speak", "table"),
    ],
)
def test_negation_rules(prompt, subject, expected, rule):
    assert negate(prompt, subject) == (expected, rule)


def test_facts_negate_is_the_negation_module():
    from editlab.facts import fact as facts
    from editlab.facts import negation

    assert facts.negate is negation.negate


def test_a_given_negated_prompt_is_used_for_the_not_form_and_checked():
    fact = Fact(
        "Danielle Darrieux",
        "The mother tongue of {} is",
        "English",
        "French",
        negated_prompt="The mother tongue of {} is surely not",
    )
    assert fact.negated() == ("The mother tongue of Danielle Darrieux is surely not", "given")
    assert fact.negated("contraction") == ("The mother tongue of Danielle Darrieux isn't", "table")
    assert Fact.from_dict(fact.to_dict()) == fact
    with pytest.raises(ValueError, match="does not contain the subject"):
        Fact("Danielle Darrieux", "The mother tongue of {} is", "English", negated_prompt="Her mother tongue is not")
    with pytest.raises(ValueError, match="is the prompt itself"):
        Fact("Danielle Darrieux", "The mother tongue of {} is", "English", negated_prompt="The mother tongue of {} is")


def test_a_dataset_record_may_carry_its_own_negated_prompt(tmp_path):
    from editlab.facts.datasets import load_dataset

    path = tmp_path / "facts.json"
    path.write_text(
        '[{"subject": "Toko Yasuda", "prompt": "{}\'s instrument:", "target_new": "guitar", '
        '"negated_prompt": "{}\'s instrument is not"}]'
    )
    (fact,) = load_dataset(path).facts
    assert fact.negated() == ("Toko Yasuda's instrument is not", "given")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("target_new", float("inf"), "is the number inf, not text"),
        ("target_new", float("nan"), "is the number nan, not text"),
        ("target_new", "\u200b", "only invisible characters"),
        ("target_new", " \u200b\u2060 ", "only invisible characters"),
        ("subject", "Danielle\x00 Darrieux", "control character"),
        ("target_new", "Eng\x1blish", "control character"),
        ("prompt", "The mother tongue of {} is\x07", "control character"),
    ],
)
def test_text_that_is_not_visible_text_is_refused_with_the_field_named(field, value, message):
    kw = {
        "subject": "Danielle Darrieux",
        "prompt": "The mother tongue of {} is",
        "target_new": "English",
        "target_true": "French",
        field: value,
    }
    with pytest.raises(ValueError, match=f"Fact.{field}.*{message}"):
        Fact(**kw)


def test_a_target_that_only_looks_different_is_the_true_target():
    with pytest.raises(ValueError, match="equals Fact.target_true"):
        Fact("Danielle Darrieux", "The mother tongue of {} is", "English\u200b", "English")


def test_a_prompt_may_hold_line_breaks_and_a_year_may_be_a_number():
    fact = Fact("Danielle Darrieux", "Category: actors\n\nThe mother tongue of {} is", 1917, "French")
    assert fact.target_new == "1917"


def test_the_prompt_length_cap_holds_after_the_subject_is_put_in():
    from editlab.core.limits import current

    cap = current().max_prompt_chars
    subject = "S" * (cap - 5)
    with pytest.raises(ValueError, match="with the subject in it"):
        Fact(subject, "{} is in the city of", "Rome")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(subject="1", prompt="0\u200b" * 499, target_new="0"),  # a repr four times as long as the text
        dict(subject="x" * 1000, prompt="y" * 1000, target_new="z"),
        dict(subject="Rome", prompt="Rome is in", target_new="Italy", negated_prompt="\u200b" * 990 + " not"),
    ],
)
def test_a_refused_subject_or_prompt_is_quoted_short(kwargs):
    with pytest.raises(ValueError, match="does not (occur|contain)") as e:
        Fact(**kwargs)
    assert len(str(e.value)) < 600, str(e.value)


@pytest.mark.parametrize("subject,prompt", [("a{}", "a{} is"), ("a{}", "{} is"), ("{}", "{} is")])
def test_a_subject_holding_the_placeholder_is_refused(subject, prompt):
    # it used to be put in for its own '{}' ('a{} is' became 'aa{} is') and changed again on every reload
    with pytest.raises(ValueError, match=r"Fact.subject contains '\{\}'"):
        Fact(subject, prompt, "x")

"""editlab.facts.negation: grammatical negation of cloze prompts and questions, its template table, and its
behaviour over the shared CounterFact and zsRE files (never "... developed by not")."""

import json
from collections import Counter
from pathlib import Path

import pytest

from editlab import negate as public_negate
from editlab.facts.negation import AUXILIARIES, FORMS, negate, negate_by_rules, templates

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "editing"
CHECKED = Path(__file__).resolve().parents[1] / "data" / "negations_checked.json"


# ---- the rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt,expected,rule",
    [
        ("Anna spoke the language", "Anna did not speak the language", "do:spoke"),
        ("Anna wrote in", "Anna did not write in", "do:wrote"),
        ("Anna gave birth to", "Anna did not give birth to", "do:gave"),
        ("Anna made her debut in", "Anna did not make her debut in", "do:made"),
        ("Anna took up work in", "Anna did not take up work in", "do:took"),
        ("Anna found employment in", "Anna did not find employment in", "do:found"),
        ("Anna held the title of", "Anna did not hold the title of", "do:held"),
        ("Anna lost her life at", "Anna did not lose her life at", "do:lost"),
        ("Anna has a citizenship from", "Anna does not have a citizenship from", "do:has"),
        ("Anna worked in", "Anna did not work in", "do:worked"),
        ("Anna speaks", "Anna does not speak", "do:speaks"),
        ("Anna used to work in", "Anna did not use to work in", "do:used"),
        ("Anna regularly attends", "Anna does not regularly attend", "do:attends"),
    ],
)
def test_do_support_gives_the_base_form_of_regular_and_irregular_verbs(prompt, expected, rule):
    assert negate_by_rules(prompt, "Anna") == (expected, rule)


@pytest.mark.parametrize(
    "prompt,expected,rule",
    [
        ("Anna can be found in", "Anna cannot be found in", "modal:can"),
        ("Anna will be buried in", "Anna will not be buried in", "modal:will"),
        ("Anna could be seen in", "Anna could not be seen in", "modal:could"),
        ("Anna must live in", "Anna must not live in", "modal:must"),
        ("Anna is known for performing", "Anna is not known for performing", "aux:is"),
        ("Anna has been living in", "Anna has not been living in", "aux:has"),
    ],
)
def test_modals_and_auxiliaries_take_not_after_them(prompt, expected, rule):
    assert negate_by_rules(prompt, "Anna") == (expected, rule)


@pytest.mark.parametrize(
    "prompt,expected",
    [
        ("Anna can be found in", "Anna can't be found in"),
        ("Anna will be buried in", "Anna won't be buried in"),
        ("Anna is located in", "Anna isn't located in"),
        ("Anna was born in", "Anna wasn't born in"),
        ("Anna's parents are from", "Anna's parents aren't from"),
        ("Anna's parents were from", "Anna's parents weren't from"),
        ("Anna has been living in", "Anna hasn't been living in"),
        ("Anna has a citizenship from", "Anna doesn't have a citizenship from"),  # only the auxiliary "has" contracts
        ("Anna speaks", "Anna doesn't speak"),
        ("Anna spoke", "Anna didn't speak"),
        ("Anna may live in", "Anna may not live in"),  # no contraction: the full form stays
    ],
)
def test_contraction_spellings(prompt, expected):
    assert negate_by_rules(prompt, "Anna", form="contraction")[0] == expected


def test_am_has_no_contraction():
    assert negate("I am a citizen of", form="contraction") == ("I am not a citizen of", "aux:am")


@pytest.mark.parametrize(
    "prompt,subject,word",
    [
        ("Apple A5 was not created by", "Apple A5", "not"),
        ("Paris isn't the capital of", "Paris", "isn't"),
        ("Anna never spoke", "Anna", "never"),
        ("Anna cannot be found in", "Anna", "cannot"),
    ],
)
def test_an_already_negated_prompt_comes_back_unchanged(prompt, subject, word):
    for form in FORMS:
        assert negate(prompt, subject, form) == (prompt, f"already-negated:{word}")


def test_the_table_comes_before_the_rules():
    assert negate("Anna Ek is located in", "Anna Ek") == ("Anna Ek is not located in", "table")
    assert negate_by_rules("Anna Ek is located in", "Anna Ek") == ("Anna Ek is not located in", "aux:is")


def test_a_negation_inside_the_subject_does_not_count():
    assert negate("What So Not was founded in", "What So Not") == ("What So Not was not founded in", "table")
    assert negate("What So Not was founded in") == ("What So Not was not founded in", "table")
    assert negate_by_rules("What So Not was founded in", "What So Not")[1] == "aux:was"


def test_unknown_form_names_the_valid_forms():
    with pytest.raises(ValueError, match="not, contraction, not_true, never"):
        negate("Anna is in", "Anna", form="nicht")


@pytest.mark.parametrize(
    "prompt,subject,expected",
    [
        (
            "Where Danielle Darrieux is from, people speak the language of",
            "Danielle Darrieux",
            "Where Danielle Darrieux is from, people do not speak the language of",
        ),
        ("What is the twin city of Lyon? It is", "Lyon", "What is the twin city of Lyon? It is not"),
        (
            "Which position does Ann Hoy play? They play as",
            "Ann Hoy",
            "Which position does Ann Hoy play? They do not play as",
        ),
        ("One can get to Capoeira by navigating", "Capoeira", "One cannot get to Capoeira by navigating"),
        ("Mukkam's surroundings include", "Mukkam", "Mukkam's surroundings do not include"),
        ("Liechtenstein is full of people who speak", "Liechtenstein", "Liechtenstein is not full of people who speak"),
        ("The Who speaks", "The Who", "The Who does not speak"),
        ("Is This It was released on", "Is This It", "Is This It was not released on"),
    ],
)
def test_the_main_clause_is_negated(prompt, subject, expected):
    assert negate(prompt, subject)[0] == expected


@pytest.mark.parametrize(
    "prompt,subject,expected,rule",
    [
        (
            "What company published Jane Eyre?",
            "Jane Eyre",
            "What company did not publish Jane Eyre?",
            "wh-do:published",
        ),
        ("Who developed R?", "R", "Who did not develop R?", "wh-do:developed"),
        ("Which team does Ann Hoy play for?", "Ann Hoy", "Which team does Ann Hoy not play for?", "wh-aux:does"),
        (
            "What is the product made by UniFirst?",
            "UniFirst",
            "What is not the product made by UniFirst?",
            "wh-copula:is",
        ),
        ("Who was Ann Hoy's mother?", "Ann Hoy", "Who was not Ann Hoy's mother?", "wh-copula:was"),
        ("Who has acted in the film Tea?", "Tea", "Who has not acted in the film Tea?", "wh-aux:has"),
    ],
)
def test_questions(prompt, subject, expected, rule):
    assert negate(prompt, subject) == (expected, rule)


def test_question_forms():
    q = "Which team does Ann Hoy play for?"
    assert negate(q, "Ann Hoy", "contraction")[0] == "Which team doesn't Ann Hoy play for?"
    assert negate(q, "Ann Hoy", "never")[0] == "Which team does Ann Hoy never play for?"
    assert negate(q, "Ann Hoy", "not_true") == (None, "unnegatable: a question has no not-true form")


def test_the_four_forms_of_a_statement():
    got = {form: negate("Anna Ek spoke the language", "Anna Ek", form)[0] for form in FORMS}
    assert got == {
        "not": "Anna Ek did not speak the language",
        "contraction": "Anna Ek didn't speak the language",
        "not_true": "It is not true that Anna Ek spoke the language",
        "never": "Anna Ek never spoke the language",
    }
    assert negate("In Paris, people speak", "Paris", "not_true")[0] == "It is not true that in Paris, people speak"


def test_unnegatable_prompts_are_none_never_appended():
    for prompt in ("The artwork Isleworth Mona Lisa by whom?", "Anna Ek label", "Anna Ek"):
        negated, rule = negate(prompt, "Anna Ek" if "Anna" in prompt else None)
        assert negated is None and rule.startswith("unnegatable: "), (prompt, negated, rule)


# ---- the template table -------------------------------------------------------------------------------
def test_the_table_covers_counterfact_with_provenance():
    table = json.loads(
        (Path(__file__).resolve().parents[2] / "editlab" / "data" / "negation_templates.json").read_text()
    )
    assert len(table["templates"]) == 213 == len(templates())
    assert "2026-12-07" in table["provenance"]["method"]
    hand = {r["template"] for r in table["templates"] if r["source"] == "hand"}
    assert hand == set(table["provenance"]["hand_changed"]) and "{}, developed by" in hand
    for row in table["templates"]:
        assert row["source"] in ("rule", "hand") and row["template"].count("{}") == 1
        for form in FORMS:
            text = row[form]
            assert text is None or (text.count("{}") == 1 and not text.endswith((" by not", " in not", " of not")))


def test_the_table_recovers_a_neighbour_prompts_subject():
    assert negate("Ferrari F40, developed by") == ("Ferrari F40, not developed by", "table")
    assert negate("Ferrari F40, developed by", form="not_true") == (
        "It is not true that Ferrari F40 was developed by",
        "table",
    )
    assert negate("Mike Holmgren, the", "Mike Holmgren") == ("Mike Holmgren, not the", "table")


def test_editlab_negate_is_this_function():
    assert public_negate is negate


# ---- hand-checked negations ---------------------------------------------------------------------------
def test_every_hand_checked_negation_is_reproduced():
    checked = json.loads(CHECKED.read_text(encoding="utf-8"))
    assert len(checked) == 100
    wrong = [
        (c["prompt"], c["form"], negate(c["prompt"], c["subject"], c["form"])[0], c["expected"])
        for c in checked
        if negate(c["prompt"], c["subject"], c["form"])[0] != c["expected"]
    ]
    assert not wrong, wrong


# ---- the shared data files ----------------------------------------------------------------------------
def _load(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared CounterFact/zsRE files live next to the repository")
    return json.loads(path.read_text(encoding="utf-8"))


def _appended(prompt: str, negated: str | None) -> bool:
    """Negated by appending " not"/" never" to a prompt that does not end with an auxiliary ("It is" may)."""
    if negated is None or prompt.split()[-1].lower() in AUXILIARIES:
        return False
    return negated.rstrip() in (prompt.rstrip() + " not", prompt.rstrip() + " never")


@pytest.fixture(scope="module")
def prompt_sets():
    cf, zsre = _load("counterfact-edit.json"), _load("zsre-1k.json")
    return {
        "counterfact prompt": [(r["prompt"], r["subject"]) for r in cf],
        "counterfact rephrase": [(r["rephrase_prompt"], r["subject"]) for r in cf],
        "counterfact locality": [(r["locality_prompt"], None) for r in cf],
        "zsre src": [(r["src"], r["subject"]) for r in zsre],
        "zsre rephrase": [(r["rephrase"], r["subject"]) for r in zsre],
    }


# most prompts that are unnegatable per set and form, as measured (the bound catches regressions)
BOUNDS = {
    "counterfact prompt": {"not": 0, "contraction": 1297, "not_true": 0, "never": 912},
    "counterfact rephrase": {"not": 0, "contraction": 190, "not_true": 6, "never": 461},
    "counterfact locality": {"not": 0, "contraction": 1244, "not_true": 0, "never": 885},
    "zsre src": {"not": 6, "contraction": 6, "not_true": 1000, "never": 471},
    "zsre rephrase": {"not": 39, "contraction": 39, "not_true": 1000, "never": 500},
}


@pytest.mark.parametrize("form", FORMS)
def test_no_shared_prompt_is_negated_by_appending(prompt_sets, form):
    for name, items in prompt_sets.items():
        unnegatable, appended = 0, []
        for prompt, subject in items:
            negated, rule = negate(prompt, subject, form)
            unnegatable += negated is None
            assert (negated is None) == rule.startswith("unnegatable"), (prompt, rule)
            if _appended(prompt, negated):
                appended.append((prompt, negated))
        assert not appended, (name, form, appended[:5])
        assert unnegatable <= BOUNDS[name][form], (name, form, unnegatable)


def test_every_counterfact_prompt_is_negated_from_the_table(prompt_sets):
    rows = templates()
    for form in FORMS:
        rules = Counter()
        for prompt, subject in prompt_sets["counterfact prompt"]:
            negated, rule = negate(prompt, subject, form)
            given = rows[prompt.replace(subject, "{}")][form]
            assert rule == ("table" if given is not None else rule) and (negated is None) == (given is None), prompt
            if given is not None:
                assert negated == given.replace("{}", subject)
            rules[rule.split(":")[0]] += 1
        assert rules["table"] + rules["unnegatable"] == len(prompt_sets["counterfact prompt"])

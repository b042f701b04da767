"""The three-way reading of a continuation after a negated prompt (editlab.measure.judge)."""

import pytest

from editlab.measure.judge import first_clause, judge


@pytest.mark.parametrize(
    "text, verdict",
    [
        # degenerate continuations the old first-word rule counted as "the edit did not survive"
        (" knowing about Islam, and he was a", "neither"),
        (" native to every place every time.", "neither"),
        (" a language that is spoken by", "neither"),
        ("", "neither"),
        ("\n\n", "neither"),
        # the new target, first or later in the first clause
        (" English.", "new"),
        (" only English, but also French", "new"),
        (" the English language, which", "new"),
        # the true target, or another answer (a proper name) instead
        (" French, but English", "answer"),
        (" French.", "answer"),
        (" Spanish; he spoke", "answer"),
        (" in Italy but in", "answer"),
    ],
)
def test_real_continuations_are_judged_on_their_first_clause(text, verdict):
    assert judge(text, "English", "French") == verdict


def test_the_new_target_named_after_the_first_clause_does_not_count():
    assert judge(" a native speaker. She spoke English", "English", "French") == "neither"


def test_answers_of_the_relation_the_caller_knows_count_as_another_answer():
    assert judge(" a politician by trade", "actor", "singer") == "neither"
    assert judge(" a politician by trade", "actor", "singer", answers=["politician"]) == "answer"


def test_the_new_target_matches_whole_words_only():
    assert judge(" Englishman by birth", "English", "French") == "answer"  # a name, not the target
    assert judge(" Frenchified", "English", "French") == "answer"


def test_pronouns_and_sentence_words_are_not_answers():
    assert judge(" It is a city", "Paris", "London") == "neither"
    assert judge(" The same as before", "Paris", "London") == "neither"


def test_no_text_is_no_verdict():
    assert judge(None, "English") is None


def test_first_clause_stops_at_punctuation_and_conjunctions():
    assert first_clause(" French, and not") == "French"
    assert first_clause(' "Paris" is') == 'Paris" is'
    assert first_clause(" located in Rome because") == "located in Rome"

"""What a free continuation asserts: the new target, another answer, or neither.

The generation form of PN reads the greedy text after a negated prompt. Its first word alone is a
poor judge: "... is not knowing about Islam" or "... is not native to every place every time" do
not start with the new target, yet they assert no answer at all — the edit did not "survive
negation" there, but the model did not read the negation either. :func:`judge` reads the
continuation's **first clause** and says which of three it is:

* ``"new"``     — the clause names the new target (the edit survived the negation);
* ``"answer"``  — it names the true target or another answer of the relation (the neighbours'
  answers, or answers the caller knows, e.g. every target of the relation in a dataset), or its
  first content word is a proper name (an entity the model asserts instead);
* ``"neither"`` — a hedge, a description, an empty or degenerate text.

No model here: string rules over text the probes already generated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

VERDICTS = ("new", "answer", "neither")
# Where a first clause ends: sentence punctuation, a line break, or a conjunction starting a new clause.
_CLAUSE_END = re.compile(r"[.;:!?\n(]|,\s|\s(?:but|and|which|who|because|so|while|although|or)\b", re.IGNORECASE)
_SKIP = {
    "a",
    "an",
    "the",
    "only",
    "just",
    "really",
    "actually",
    "exactly",
    "even",
    "also",
    "in",
    "from",
    "of",
    "to",
    "at",
    "on",
    "by",
    "as",
    "for",
    "with",
}
_NOT_NAMES = {
    "I",
    "It",
    "He",
    "She",
    "They",
    "We",
    "You",
    "This",
    "That",
    "These",
    "Those",
    "There",
    "The",
    "A",
    "An",
    "In",
    "No",
    "Not",
    "Yes",
    "However",
    "But",
    "And",
    "Or",
    "So",
    "If",
    "As",
    "What",
    "Which",
    "Who",
}


def first_clause(text: str) -> str:
    """The continuation up to the end of its first clause (leading spaces and quotes dropped)."""
    text = text.lstrip().lstrip("\"'“‘")
    m = _CLAUSE_END.search(text)
    return (text[: m.start()] if m else text).strip()


def names(clause: str, target: str | None) -> bool:
    """The clause contains the target as whole words (case-insensitive)."""
    if not target or not target.strip():
        return False
    return re.search(r"(?<![\w])" + re.escape(target.strip()) + r"(?![\w])", clause, re.IGNORECASE) is not None


def _proper_name_first(clause: str) -> bool:
    words = [w.strip("\"'“”‘’") for w in clause.split()]
    words = [w for w in words if w]
    while words and words[0].lower() in _SKIP:
        words = words[1:]
    return bool(words) and words[0][:1].isupper() and words[0] not in _NOT_NAMES and words[0][:1].isalpha()


def judge(text: str | None, new: str, true: str | None = None, answers: Iterable[str] = ()) -> str | None:
    """``"new"``, ``"answer"`` or ``"neither"`` for a continuation (None when there is no text to judge:
    the probe was not run). The new target wins when it is named, wherever in the first clause."""
    if text is None:
        return None
    clause = first_clause(text)
    if names(clause, new):
        return "new"
    known = [a for a in (true, *answers) if a and a.strip() and a.strip().lower() != new.strip().lower()]
    if any(names(clause, a) for a in known) or _proper_name_first(clause):
        return "answer"
    return "neither"

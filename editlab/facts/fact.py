"""Facts to edit. The negation the probes use lives in :mod:`editlab.facts.negation` (re-exported here)."""

from __future__ import annotations

import itertools
import math
import unicodedata
from dataclasses import dataclass

from editlab.core.bounded import short
from editlab.facts.negation import AUXILIARIES, negate  # noqa: F401  (editlab.facts.fact.negate is public API)


def visible_form(text: str) -> str:
    """The text without invisible format characters (zero-width space, joiners, BOM), stripped: two
    targets that look the same compare equal."""
    return "".join(c for c in text if unicodedata.category(c) != "Cf").strip()


def visible(text: str) -> bool:
    """Whether the text has a character a reader can see."""
    return any(not c.isspace() and unicodedata.category(c) not in ("Cf", "Cc") for c in text)


@dataclass(frozen=True)
class Neighbor:
    """A prompt about a different subject whose answer the edit must not change."""

    prompt: str
    answer: str | None = None


@dataclass(frozen=True)
class Fact:
    """One fact to write: ``prompt`` (containing ``subject``) completed by ``target_new``.

    ``prompt`` may be CounterFact's template form with ``{}`` standing for the subject.
    ``negated_prompt``: the prompt negated, when the user gives it (else :func:`editlab.negate`
    builds it where it can); it must contain the subject too.
    """

    subject: str
    prompt: str
    target_new: str
    target_true: str | None = None
    paraphrases: tuple[str, ...] = ()
    neighbors: tuple[Neighbor, ...] = ()
    case_id: str | int | None = None
    negated_prompt: str | None = None

    def __post_init__(self):
        """Every field checked and normalised (see the helpers below); a bad one raises ValueError
        naming the field and what to give instead."""
        from editlab.core.limits import current

        limits = current()
        subject, prompt = _subject_and_prompt(limits, self.subject, self.prompt)
        negated_prompt = _negated_prompt(limits, self.negated_prompt, subject, prompt)
        target_new = _text(limits, "target_new", self.target_new, "max_target_chars", single_line=True)
        target_true = _text(
            limits, "target_true", self.target_true, "max_target_chars", required=False, single_line=True
        )
        if target_true is not None and visible_form(target_true) == visible_form(target_new):
            raise ValueError("Fact.target_new equals Fact.target_true: the edit would change nothing")
        paraphrases = [
            _text(limits, f"paraphrases[{j}]", p, required=False)
            for j, p in enumerate(_sequence(limits, "paraphrases", self.paraphrases), 1)
        ]
        paraphrases = [p for p in paraphrases if p is not None]
        neighbors = [_neighbor(limits, j, n) for j, n in enumerate(_sequence(limits, "neighbors", self.neighbors), 1)]
        limits.check("max_probe_prompts", len(paraphrases) + len(neighbors), "Fact.paraphrases and Fact.neighbors")
        case_id = _case_id(limits, self.case_id)
        for name, value in (
            ("subject", subject),
            ("prompt", prompt),
            ("negated_prompt", negated_prompt),
            ("target_new", target_new),
            ("target_true", target_true),
            ("paraphrases", tuple(paraphrases)),
            ("neighbors", tuple(neighbors)),
            ("case_id", case_id),
        ):
            object.__setattr__(self, name, value)

    @property
    def template(self) -> str:
        """The prompt with the subject's last occurrence replaced by ``{}``."""
        i = self.prompt.rfind(self.subject)
        return self.prompt[:i] + "{}" + self.prompt[i + len(self.subject) :]

    def negated(self, form: str = "not") -> tuple[str | None, str]:
        """The prompt negated in ``form`` (:data:`editlab.facts.negation.FORMS`): the user's own
        ``negated_prompt`` for the "not" form when given (rule ``"given"``), else
        :func:`editlab.negate` — ``(None, "unnegatable: ...")`` where no English negation is found."""
        if form == "not" and self.negated_prompt is not None:
            return self.negated_prompt, "given"
        return negate(self.prompt, self.subject, form)

    def statement(self, target: str) -> str:
        return f"{self.prompt} {target}"

    def to_dict(self) -> dict:
        return {
            "case_id": self.case_id,
            "subject": self.subject,
            "prompt": self.prompt,
            "target_new": self.target_new,
            "target_true": self.target_true,
            "paraphrases": list(self.paraphrases),
            "neighbors": [{"prompt": n.prompt, "answer": n.answer} for n in self.neighbors],
            **({"negated_prompt": self.negated_prompt} if self.negated_prompt is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Fact:
        if not isinstance(d, dict):
            raise ValueError(f"a fact should be a mapping with subject, prompt and target_new, got {type(d).__name__}")
        missing = [k for k in ("subject", "prompt", "target_new") if k not in d]
        if missing:
            raise ValueError(f"a fact needs {', '.join(missing)} (it has {', '.join(map(str, d)) or 'no fields'})")
        return cls(  # sequences are passed as given: Fact refuses a string where a list belongs
            subject=d["subject"],
            prompt=d["prompt"],
            target_new=d["target_new"],
            target_true=d.get("target_true"),
            paraphrases=d.get("paraphrases") or (),
            neighbors=d.get("neighbors") or (),
            case_id=d.get("case_id"),
            negated_prompt=d.get("negated_prompt"),
        )


def _text(limits, name, value, limit="max_prompt_chars", required=True, single_line=False):
    """A field's text: a string (a whole number is taken as its digits, as JSON years come),
    stripped, visible (not only spaces or invisible format characters), free of control
    characters (a prompt may hold line breaks and tabs), non-empty when required, and within
    the operator's length limit."""
    if value is None and not required:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"Fact.{name} is the number {value!r}, not text: give the {name} as a string")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"Fact.{name} must be a string, got {type(value).__name__} {short(value)}")
    value = value.strip()
    bad = [c for c in value if unicodedata.category(c) == "Cc" and (single_line or c not in "\n\t")]
    if bad:
        raise ValueError(f"Fact.{name} contains a control character ({bad[0]!r}): remove it")
    if not visible(value):
        if not required and not value:
            return None
        raise ValueError(
            f"Fact.{name} is empty" + (" (only invisible characters)" if value else "") + ": give a non-empty string"
        )
    limits.check(limit, len(value), f"Fact.{name} ({len(value):,} characters)")
    return value


def _sequence(limits, name, value) -> tuple:
    """A list or tuple of entries (an endless iterator stops at the limit)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)):
        raise ValueError(
            f"Fact.{name} is a string ({short(value)}), not a sequence: give a list or tuple, "
            f"e.g. {name}=({short(value, 40)},)"
        )
    if isinstance(value, dict):
        raise ValueError(f"Fact.{name} is a mapping; give a list or tuple of entries")
    cap = limits.max_probe_prompts or 100_000
    try:
        items = tuple(itertools.islice(value, cap + 1))  # an endless iterator stops here
    except TypeError:
        raise ValueError(f"Fact.{name} must be a list or tuple, got {type(value).__name__} {short(value)}") from None
    limits.check("max_probe_prompts", len(items), f"Fact.{name}")
    return items


def _subject_and_prompt(limits, subject, prompt) -> tuple[str, str]:
    """The subject, and the prompt with the subject in it (put in for its '{}' placeholder)."""
    subject = _text(limits, "subject", subject, single_line=True)
    if "{}" in subject:  # the prompt's placeholder: the subject put in for it would hold it again
        raise ValueError(
            "Fact.subject contains '{}', the placeholder that stands for the subject in a prompt: "
            "remove it from the subject"
        )
    prompt = _text(limits, "prompt", prompt)
    if "{}" in prompt:
        if prompt.count("{}") != 1:
            raise ValueError("Fact.prompt has more than one '{}' placeholder; use exactly one for the subject")
        prompt = prompt.replace("{}", subject)
        limits.check(
            "max_prompt_chars", len(prompt), f"Fact.prompt with the subject in it ({len(prompt):,} characters)"
        )
    if subject not in prompt:
        raise ValueError(
            f"Fact.subject {short(subject)} does not occur in Fact.prompt {short(prompt)}: the prompt must "
            "contain the subject word for word (or '{}' where the subject goes)"
        )
    return subject, prompt


def _negated_prompt(limits, negated_prompt, subject: str, prompt: str) -> str | None:
    """The user's own negated prompt, with the subject in it, other than the prompt; or None."""
    negated_prompt = _text(limits, "negated_prompt", negated_prompt, required=False)
    if negated_prompt is None:
        return None
    if negated_prompt.count("{}") > 1:
        raise ValueError("Fact.negated_prompt has more than one '{}' placeholder; use exactly one for the subject")
    negated_prompt = negated_prompt.replace("{}", subject)
    limits.check(
        "max_prompt_chars",
        len(negated_prompt),
        f"Fact.negated_prompt with the subject in it ({len(negated_prompt):,} characters)",
    )
    if subject not in negated_prompt:
        raise ValueError(
            f"Fact.negated_prompt {short(negated_prompt)} does not contain the subject {short(subject)}: "
            "give the negated prompt with the subject word for word (or '{}' where it goes)"
        )
    if negated_prompt == prompt:
        raise ValueError("Fact.negated_prompt is the prompt itself: give the prompt with its negation")
    return negated_prompt


def _neighbor(limits, j: int, n) -> Neighbor:
    """The j-th neighbour from a prompt, (prompt, answer), a mapping or a Neighbor."""
    if isinstance(n, str):
        n = Neighbor(n)
    elif isinstance(n, (tuple, list)) and 1 <= len(n) <= 2:
        n = Neighbor(*n)
    elif isinstance(n, dict) and "prompt" in n:
        n = Neighbor(n["prompt"], n.get("answer"))
    elif not isinstance(n, Neighbor):
        raise ValueError(f"Fact.neighbors[{j}] should be a prompt, (prompt, answer) or Neighbor, got {short(n)}")
    return Neighbor(
        _text(limits, f"neighbors[{j}].prompt", n.prompt),
        _text(limits, f"neighbors[{j}].answer", n.answer, "max_target_chars", required=False),
    )


def _case_id(limits, case_id):
    """A string or a whole number below 2**63, or None."""
    if case_id is not None and (isinstance(case_id, bool) or not isinstance(case_id, (str, int))):
        raise ValueError(
            f"Fact.case_id must be a string or a whole number, got {type(case_id).__name__} {short(case_id)}"
        )
    if isinstance(case_id, str):
        return _text(limits, "case_id", case_id, required=False, single_line=True)
    if isinstance(case_id, int) and abs(case_id) > 2**63:
        raise ValueError(f"Fact.case_id {short(case_id)} is too large: give an id below 2**63, or a string")
    return case_id

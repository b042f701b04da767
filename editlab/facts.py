"""Facts to edit, and the negation rule the probes use."""
from __future__ import annotations

import re
from dataclasses import dataclass

AUXILIARIES = (
    "is", "are", "was", "were", "am", "be", "been", "has", "have", "had", "does", "do", "did",
    "can", "could", "will", "would", "shall", "should", "may", "might", "must",
)
_AUX_RE = re.compile(r"\b(" + "|".join(AUXILIARIES) + r")\b")


@dataclass(frozen=True)
class Neighbor:
    """A prompt about a different subject whose answer the edit must not change."""

    prompt: str
    answer: str | None = None


@dataclass(frozen=True)
class Fact:
    """One fact to write: ``prompt`` (containing ``subject``) completed by ``target_new``.

    ``prompt`` may be CounterFact's template form with ``{}`` standing for the subject.
    """

    subject: str
    prompt: str
    target_new: str
    target_true: str | None = None
    paraphrases: tuple[str, ...] = ()
    neighbors: tuple[Neighbor, ...] = ()
    case_id: str | int | None = None

    def __post_init__(self):
        def clean(name, value):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Fact.{name} is empty: give a non-empty string")
            return value.strip()

        subject = clean("subject", self.subject)
        prompt = clean("prompt", self.prompt)
        if "{}" in prompt:
            if prompt.count("{}") != 1:
                raise ValueError("Fact.prompt has more than one '{}' placeholder; use exactly one for the subject")
            prompt = prompt.replace("{}", subject)
        if subject not in prompt:
            raise ValueError(
                f"Fact.subject {subject!r} does not occur in Fact.prompt {prompt!r}: the prompt must "
                "contain the subject word for word (or '{}' where the subject goes)"
            )
        target_new = clean("target_new", self.target_new)
        target_true = None if self.target_true is None or not str(self.target_true).strip() else str(self.target_true).strip()
        if target_true is not None and target_true == target_new:
            raise ValueError("Fact.target_new equals Fact.target_true: the edit would change nothing")
        paraphrases = tuple(p.strip() for p in (self.paraphrases or ()) if p and p.strip())
        neighbors = []
        for n in self.neighbors or ():
            if isinstance(n, str):
                n = Neighbor(n)
            elif isinstance(n, (tuple, list)):
                n = Neighbor(*n)
            elif isinstance(n, dict):
                n = Neighbor(n["prompt"], n.get("answer"))
            if not n.prompt or not n.prompt.strip():
                raise ValueError("Fact.neighbors has an empty prompt")
            neighbors.append(Neighbor(n.prompt.strip(), n.answer.strip() if n.answer else None))
        for name, value in (("subject", subject), ("prompt", prompt), ("target_new", target_new),
                            ("target_true", target_true), ("paraphrases", paraphrases),
                            ("neighbors", tuple(neighbors))):
            object.__setattr__(self, name, value)

    @property
    def template(self) -> str:
        """The prompt with the subject's last occurrence replaced by ``{}``."""
        i = self.prompt.rfind(self.subject)
        return self.prompt[:i] + "{}" + self.prompt[i + len(self.subject):]

    def statement(self, target: str) -> str:
        return f"{self.prompt} {target}"

    def to_dict(self) -> dict:
        return {
            "case_id": self.case_id, "subject": self.subject, "prompt": self.prompt,
            "target_new": self.target_new, "target_true": self.target_true,
            "paraphrases": list(self.paraphrases),
            "neighbors": [{"prompt": n.prompt, "answer": n.answer} for n in self.neighbors],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Fact":
        return cls(
            subject=d["subject"], prompt=d["prompt"], target_new=d["target_new"],
            target_true=d.get("target_true"), paraphrases=tuple(d.get("paraphrases") or ()),
            neighbors=tuple(Neighbor(n["prompt"], n.get("answer")) for n in d.get("neighbors") or ()),
            case_id=d.get("case_id"),
        )


def negate(prompt: str, subject: str | None = None) -> tuple[str, str]:
    """Negate a cloze prompt: insert "not" after the last auxiliary verb that follows the subject.

    Returns ``(negated_prompt, rule)``; ``rule`` is ``"aux:<verb>"`` when an auxiliary was found,
    else ``"append"`` (the literature's fallback: the prompt followed by " not").
    """
    start = 0
    if subject and subject in prompt:
        start = prompt.rfind(subject) + len(subject)
    matches = [m for m in _AUX_RE.finditer(prompt) if m.start() >= start]
    if matches:
        m = matches[-1]
        after = prompt[m.end():]
        if re.match(r"\s*not\b", after):
            return prompt, f"already-negated:{m.group(1)}"
        return prompt[: m.end()] + " not" + after, f"aux:{m.group(1)}"
    return prompt.rstrip() + " not", "append"

"""Negate a cloze prompt or a question so that it still reads as English.

``negate(prompt, subject=None, form="not") -> (negated_prompt | None, rule)``. The *main clause* is
negated: the last finite verb of the last sentence ("Where X is from, people do not speak the
language of"), or, in a question, its first finite verb ("Which team does X not play for?"). A
verb inside a relative clause after the main verb is skipped ("X is not full of people who speak").

Forms (:data:`FORMS`):

* ``not``         the minimal negation: "X is not located in", "X does not speak", "X cannot be found
                  in", "X did not use to work in", "X, not developed by" (an appositive fragment);
* ``contraction`` "isn't", "doesn't", "didn't", "can't", "won't", "hasn't" (perfect "has" only);
                  "am", "may" and "might" have none and keep "am not", "may not", "might not";
* ``not_true``    "It is not true that " + the last sentence as a clause; statements only;
* ``never``       "X is never located in", "X never spoke the language", "Who was never M's mother?".

The second element, ``rule``, says how:

* ``table``               the prompt matched a reviewed CounterFact template (data/negation_templates.json);
* ``aux:<aux>``           "not" after a finite be, or a perfect have: "is not", "has not been";
* ``modal:<modal>``       "not" after a modal: "cannot", "will not";
* ``do:<verb>``           do-support for a lexical verb: "speaks" -> "does not speak", "worked" -> "did
                          not work", "has a" -> "does not have a", "used to" -> "did not use to";
* ``fragment``            no finite verb, an appositive after a comma: "X, developed by" -> "X, not developed by";
* ``wh-do:<verb>``        a question whose wh-phrase is the subject: "Who developed R?" -> "Who did not develop R?";
* ``wh-aux:<aux>``        an inverted question, "not" after its subject: "Which team does X not play for?";
* ``wh-copula:<aux>``     a question "wh + be + noun phrase": "What is not the product made by U?";
* ``not-true``            the ``not_true`` form built by these rules;
* ``already-negated:<w>`` the main clause already says not/n't/never/cannot: the prompt comes back unchanged;
* ``unnegatable: <why>``  no grammatical negation was found: the prompt is None. Nothing is ever
                          negated by appending " not".

The template table is tried first (a prompt with its subject, or a neighbour prompt whose subject
the template recovers); the rules otherwise. Unknown words are not verbs: the small lexicon below
covers the verbs of CounterFact and zsRE.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

from editlab.core.paths import PACKAGE_DATA

FORMS = ("not", "contraction", "not_true", "never")
BE = ("am", "is", "are", "was", "were")
HAVE = ("has", "have", "had")
DO = ("does", "do", "did")
MODALS = ("can", "could", "will", "would", "shall", "should", "may", "might", "must")
AUXILIARIES = BE + ("be", "been") + HAVE + DO + MODALS
TABLE = PACKAGE_DATA / "negation_templates.json"

_CONTRACTED = {
    "is": "isn't",
    "are": "aren't",
    "was": "wasn't",
    "were": "weren't",
    "has": "hasn't",
    "have": "haven't",
    "had": "hadn't",
    "does": "doesn't",
    "do": "don't",
    "did": "didn't",
    "can": "can't",
    "could": "couldn't",
    "will": "won't",
    "would": "wouldn't",
    "shall": "shan't",
    "should": "shouldn't",
    "must": "mustn't",
}
_CLITICS = {"'s": "is", "'re": "are", "'d": "did"}  # "What's", "Where'd": only after these hosts
_CLITIC_HOSTS = {"it", "what", "who", "where", "that", "there", "he", "she", "how", "which", "when", "they", "we"}
_WH = {"what", "which", "who", "whom", "whose", "where", "when", "how", "why"}
_PREPOSITIONS = {
    "in",
    "on",
    "at",
    "from",
    "for",
    "to",
    "with",
    "by",
    "of",
    "during",
    "under",
    "into",
    "after",
    "before",
    "since",
    "as",
    "about",
    "through",
    "within",
    "behind",
    "around",
    "near",
}
_DETERMINERS = {
    "the",
    "a",
    "an",
    "his",
    "her",
    "its",
    "their",
    "my",
    "our",
    "your",
    "'s",
    "this",
    "these",
    "those",
    "every",
    "each",
    "some",
    "any",
    "no",
    "whose",
}
_RELATIVES = {"who", "whom", "which", "that", "whose"}
_PLURAL_SUBJECTS = {"they", "we", "you", "i", "people", "locals", "children", "men", "women"}
_ADVERBS = {
    "also",
    "often",
    "usually",
    "still",
    "always",
    "first",
    "once",
    "all",
    "both",
    "only",
    "just",
    "later",
    "now",
    "then",
    "even",
    "already",
    "mostly",
    "mainly",
}
_NOT_LY = {
    "family",
    "italy",
    "july",
    "supply",
    "reply",
    "apply",
    "rely",
    "fly",
    "early",
    "holy",
    "ugly",
    "daily",
    "weekly",
    "monthly",
    "lily",
    "ally",
    "assembly",
    "only",
    "belly",
    "rally",
}
# Adverbs after which "never" says something else or nothing: "X never currently lives in".
_CLASH_NEVER = {
    "currently",
    "first",
    "recently",
    "once",
    "already",
    "still",
    "always",
    "often",
    "usually",
    "now",
    "originally",
    "formerly",
    "initially",
    "previously",
    "later",
    "then",
    "just",
}
_LOWERABLE = {
    "the",
    "a",
    "an",
    "in",
    "on",
    "at",
    "where",
    "when",
    "one",
    "people",
    "it",
    "they",
    "this",
    "these",
    "there",
    "every",
    "to",
    "his",
    "her",
    "its",
    "their",
    "our",
    "my",
    "what",
    "which",
    "who",
    "from",
    "after",
    "during",
    "for",
    "with",
    "by",
    "some",
    "many",
    "most",
    "all",
    "each",
    "as",
    "while",
}
_PRONOUNS = {"it", "they", "he", "she", "this", "these"}
_ABBREVIATIONS = {"st", "mr", "mrs", "ms", "dr", "jr", "sr", "mt", "ft", "gen", "col", "capt", "prof", "rev"}

# The lexicon: regular verbs by their base form; irregular ones as (base, past, past participle).
_REGULAR = """abolish act affiliate afflict air allow appear arrive assign associate assume attend award base belong
border bury call carry cause cease charge claim classify close coach commission commit compete compose
conduct connect consider contain create credit cross debut declare define derive describe design destroy
develop die direct discover dismiss dissolve distribute edit educate elect emigrate emphasize employ end enter
establish exist expire father feature fire flow follow form formulate found glorify graduate happen head
headquarter host identify illustrate include inhabit introduce invent involve join kill launch license lift like
link list live locate look maintain manage manufacture marry move mutate name narrate navigate note occupy occur
open operate originate own paint participate pass perform play portray premiere present produce prosecute
publicise publish rank rate record relate release remain report represent reside result retire revive score
serve settle sign situate specialize spot star start stay stop struggle study succeed succumb suffer support
surround threaten train turn use view vote work worship""".split()
_IRREGULAR = (
    ("bear", "bore", "born"),
    ("become", "became", "become"),
    ("begin", "began", "begun"),
    ("break", "broke", "broken"),
    ("bring", "brought", "brought"),
    ("build", "built", "built"),
    ("buy", "bought", "bought"),
    ("choose", "chose", "chosen"),
    ("come", "came", "come"),
    ("draw", "drew", "drawn"),
    ("drive", "drove", "driven"),
    ("fall", "fell", "fallen"),
    ("fight", "fought", "fought"),
    ("find", "found", "found"),
    ("fly", "flew", "flown"),
    ("get", "got", "gotten"),
    ("give", "gave", "given"),
    ("go", "went", "gone"),
    ("grow", "grew", "grown"),
    ("hold", "held", "held"),
    ("keep", "kept", "kept"),
    ("know", "knew", "known"),
    ("lead", "led", "led"),
    ("leave", "left", "left"),
    ("lose", "lost", "lost"),
    ("make", "made", "made"),
    ("meet", "met", "met"),
    ("oversee", "oversaw", "overseen"),
    ("run", "ran", "run"),
    ("say", "said", "said"),
    ("see", "saw", "seen"),
    ("sell", "sold", "sold"),
    ("send", "sent", "sent"),
    ("shoot", "shot", "shot"),
    ("show", "showed", "shown"),
    ("sing", "sang", "sung"),
    ("sit", "sat", "sat"),
    ("speak", "spoke", "spoken"),
    ("spend", "spent", "spent"),
    ("stand", "stood", "stood"),
    ("swim", "swam", "swum"),
    ("take", "took", "taken"),
    ("teach", "taught", "taught"),
    ("tell", "told", "told"),
    ("think", "thought", "thought"),
    ("understand", "understood", "understood"),
    ("wear", "wore", "worn"),
    ("win", "won", "won"),
    ("write", "wrote", "written"),
    ("broadcast", "broadcast", "broadcast"),
    ("put", "put", "put"),
    ("read", "read", "read"),
    ("set", "set", "set"),
)
_DOUBLED = {"commit", "occur", "stop", "star", "spot", "admit", "refer", "prefer", "control", "plan"}
_DO_FOR = {"3sg": "does", "base": "do", "past": "did", "ed": "did"}


@dataclass(frozen=True)
class _Word:
    """A word of the prompt at ``start:end``; the subject is one word (``subj``); ``norm`` is its lower-case
    form, or what a clitic stands for ("'s" -> "is")."""

    text: str
    start: int
    end: int
    subj: bool = False
    norm: str = ""


def _third(base: str) -> str:
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def _past(base: str) -> str:
    if base.endswith("e"):
        return base + "d"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ied"
    return base + (base[-1] if base in _DOUBLED else "") + "ed"


@lru_cache(maxsize=1)
def lexicon() -> dict[str, tuple[str, str]]:
    """Verb form -> (base, kind); kind is ``base``, ``3sg``, ``past`` (past only: "spoke"), ``ed`` (past or
    past participle: "worked", "made") or ``part`` (participle only: "spoken")."""
    out: dict[str, tuple[str, str]] = {}
    for base in _REGULAR:
        out.update({base: (base, "base"), _third(base): (base, "3sg"), _past(base): (base, "ed")})
    for base, past, part in _IRREGULAR:
        out.setdefault(_third(base), (base, "3sg"))
        if past == part:
            out.setdefault(past, (base, "ed"))
        else:
            out.setdefault(past, (base, "past"))
            out.setdefault(part, (base, "part"))
        out[base] = (base, "ed" if past == base else "base")  # "broadcast", "set": read as past
    out.update(
        {
            "found": ("find", "ed"),
            "founded": ("found", "ed"),
            "broadcasted": ("broadcast", "ed"),
            "occured": ("occur", "ed"),
            "been": ("be", "part"),
            "being": ("be", "part"),
            "be": ("be", "part"),
        }
    )
    del out["headquarters"]  # a noun: "X's headquarters are in"
    return out


# ---- words and sentences -------------------------------------------------------------------------------
_TOKEN = re.compile(r"['’][A-Za-z]+|\w+(?:[-'’.]\w+)*")


def _subject_spans(prompt: str, subject: str | None) -> list[tuple[int, int]]:
    if not subject or subject not in prompt:
        return []
    return [(m.start(), m.end()) for m in re.finditer(re.escape(subject), prompt)]


def _tokens(prompt: str, lo: int, hi: int) -> list[_Word]:
    out = []
    for m in _TOKEN.finditer(prompt, lo, hi):
        text, low = m.group(), m.group().lower().replace("’", "'")
        host, _, rest = low.partition("'")
        if rest and host in _CLITIC_HOSTS and "'" + rest in _CLITICS:
            cut = m.start() + len(host)
            out += [
                _Word(text[: len(host)], m.start(), cut, norm=host),
                _Word(text[len(host) :], cut, m.end(), norm=_CLITICS["'" + rest]),
            ]
        else:
            out.append(_Word(text, m.start(), m.end(), norm=low))
    return out


def _words(prompt: str, lo: int, spans: list[tuple[int, int]]) -> list[_Word]:
    """The words of ``prompt[lo:]``, each subject occurrence one word."""
    out, at = [], lo
    for s, e in spans:
        if e <= lo:
            continue
        out += _tokens(prompt, at, s) + [_Word(prompt[s:e], s, e, subj=True, norm="<subject>")]
        at = e
    return out + _tokens(prompt, at, len(prompt))


def _sentence_start(prompt: str, spans: list[tuple[int, int]]) -> int:
    """Where the last sentence of ``prompt`` begins (a boundary inside the subject or after "St." is none)."""
    body, start = prompt.rstrip(), 0
    for m in re.finditer(r"[.?!][\"'”’)\]]*\s+|\n+", body):
        if m.end() >= len(body) or any(s <= m.start() < e for s, e in spans):
            continue
        before = re.search(r"(\w+)$", body[: m.start()])
        word = before.group(1) if before else ""
        if body[m.start()] == "." and (word.lower() in _ABBREVIATIONS or re.fullmatch(r"[A-Z]", word)):
            continue
        start = m.end()
    return start


def _is_adverb(w: _Word) -> bool:
    n = w.norm
    return not w.subj and (n in _ADVERBS or (n.endswith("ly") and len(n) > 4 and n not in _NOT_LY))


def _before(words: list[_Word], i: int) -> _Word | None:
    """The word before ``words[i]``, skipping adverbs."""
    j = i - 1
    while j >= 0 and _is_adverb(words[j]):
        j -= 1
    return words[j] if j >= 0 else None


def _after(words: list[_Word], i: int) -> _Word | None:
    j = i + 1
    while j < len(words) and _is_adverb(words[j]):
        j += 1
    return words[j] if j < len(words) else None


def _is_participle(w: _Word | None) -> bool:
    kind = lexicon().get(w.norm, ("", ""))[1] if w and not w.subj else ""
    return kind in ("ed", "part")


# ---- which word is the finite verb ---------------------------------------------------------------------
def _plural_subject_before(words: list[_Word], i: int) -> bool:
    """Whether a base form at ``i`` has a (plural) subject before it: "people speak", "surroundings include"."""
    p = _before(words, i)
    if p is None or p.norm in _PREPOSITIONS or p.norm in _DETERMINERS:
        return False
    if p.subj or _plural(p):
        return True
    return any(w.norm in _PLURAL_SUBJECTS for w in words[:i])  # "People in X's twin city speak"


def _plural(w: _Word) -> bool:
    n = w.norm
    return n in _PLURAL_SUBJECTS or (
        n.endswith("s")
        and not n.endswith("ss")
        and w.text[:1].islower()
        and n not in lexicon()
        and n not in _DETERMINERS
        and n not in AUXILIARIES
        and not n.endswith(("us", "is", "ss"))
        and n not in ("as", "its", "has", "was")
    )


def _role(words: list[_Word], i: int, prompt: str) -> str | None:
    """``aux`` (be, perfect have, do), ``modal``, ``lex`` (a finite lexical verb) or None for ``words[i]``."""
    w, p = words[i], _before(words, i)
    n, pn = w.norm, (p.norm if p else "")
    base_form = n in ("have", "do") or lexicon().get(n, ("", ""))[1] == "base"
    if w.subj or pn in ("not", "never") + MODALS + DO or (base_form and pn == "to"):
        return None
    if n in MODALS:
        return None if pn in _DETERMINERS else "modal"
    if n in BE or n in DO:
        return "aux"
    if n in HAVE:
        return "aux" if (_is_participle(_after(words, i)) or (_after(words, i) or w).norm == "been") else "lex"
    base, kind = lexicon().get(n, ("", ""))
    if not kind or kind == "part" or pn in _DETERMINERS:
        return None
    if kind == "base":
        return "lex" if _plural_subject_before(words, i) else None
    if kind == "ed":
        nxt = _after(words, i)
        after_comma = p is not None and "," in prompt[p.end : w.start]
        if (
            p is None
            or after_comma
            or pn in BE + HAVE + ("be", "been", "being", "get", "got", "gets")
            or (nxt is not None and nxt.norm == "by")
        ):
            return None
    return "lex"


def _finite(words: list[_Word], prompt: str) -> list[tuple[int, str]]:
    return [(i, r) for i in range(len(words)) if (r := _role(words, i, prompt))]


def _main_verb(words: list[_Word], prompt: str) -> tuple[int, str, bool] | None:
    """(index, role, in_relative) of the main clause's finite verb: the last one, but not in a relative
    clause that follows it. ``in_relative``: the verb is the first of a relative clause (a fragment
    "X, who plays the" has no main verb of its own)."""
    finite = _finite(words, prompt)
    if not finite:
        return None
    rels = [k for k, w in enumerate(words) if w.norm in _RELATIVES and not w.subj]
    cut = next((k for k in rels if finite[0][0] < k), None)
    i, role = [f for f in finite if cut is None or f[0] < cut][-1]
    opener = [k for k in rels if k < i]
    in_rel = (
        bool(opener) and not any(opener[-1] < j < i for j, _ in finite) and not any(j < opener[-1] for j, _ in finite)
    )
    return i, role, in_rel


# ---- the edits -----------------------------------------------------------------------------------------
def _cased(word: str, like: str) -> str:
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _aux_edit(prompt: str, w: _Word, form: str, nxt: _Word | None = None) -> str | None:
    """``not``/``contraction``/``never`` at the auxiliary ``w``: "is not", "isn't", "is never", "cannot"."""
    if form == "never":
        return None if nxt is not None and nxt.norm in _CLASH_NEVER else prompt[: w.end] + " never" + prompt[w.end :]
    if form == "contraction" and w.norm in _CONTRACTED:
        clitic = w.text[:1] in "'’"
        new = (" " if clitic else "") + _cased(_CONTRACTED[w.norm], w.text)
        return prompt[: w.start] + new + prompt[w.end :]
    if w.norm == "can" and w.text[:1] != "'":
        return prompt[: w.end] + "not" + prompt[w.end :]
    return prompt[: w.end] + " not" + prompt[w.end :]


def _verb_info(w: _Word) -> tuple[str, str]:
    if w.norm in HAVE + DO:
        return ("have" if w.norm in HAVE else "do"), {
            "has": "3sg",
            "have": "base",
            "had": "past",
            "does": "3sg",
            "do": "base",
            "did": "past",
        }[w.norm]
    return lexicon()[w.norm]


def _do_support(prompt: str, words: list[_Word], i: int, form: str) -> str | None:
    """ "speaks" -> "does not speak" (before any adverbs: "does not regularly attend"); never: "never speaks"."""
    w, j = words[i], i
    while j > 0 and _is_adverb(words[j - 1]):
        j -= 1
    at = words[j].start
    if form == "never":
        if any(words[k].norm in _CLASH_NEVER for k in range(j, i)):
            return None
        return prompt[:at] + "never " + prompt[at:]
    base, kind = _verb_info(w)
    do = _DO_FOR[kind]
    neg = do + " not" if form != "contraction" else _CONTRACTED[do]
    return prompt[:at] + neg + " " + prompt[at : w.start] + base + prompt[w.end :]


def _verb_edit(prompt: str, words: list[_Word], i: int, role: str, form: str) -> tuple[str | None, str]:
    w = words[i]
    if role == "lex":
        return _do_support(prompt, words, i, form), f"do:{w.text}"
    rule = f"{'modal' if role == 'modal' else 'aux'}:{w.norm}"
    return _aux_edit(prompt, w, form, words[i + 1] if i + 1 < len(words) else None), rule


def _not_true(prompt: str, start: int, words: list[_Word]) -> str:
    """ "It is not true that " + the last sentence, its first letter lower-cased unless it starts a name."""
    first = words[0]
    lower = not first.subj and first.norm in _LOWERABLE
    sentence = prompt[start:]
    return prompt[:start] + "It is not true that " + (sentence[:1].lower() + sentence[1:] if lower else sentence)


# ---- statements, fragments, questions ------------------------------------------------------------------
def _fragment(prompt: str, words: list[_Word], form: str) -> tuple[str | None, str]:
    """No finite verb: "X, developed by" -> "X, not developed by" (never: only before a participle or "a")."""
    subj = [k for k, w in enumerate(words) if w.subj]
    lo = words[subj[-1]].end if subj else words[0].start
    comma = prompt.find(",", lo)
    rest = [w for w in words if w.start > comma] if comma >= 0 else []
    if not rest or prompt[comma + 1 : rest[0].start].strip():
        return None, "unnegatable: no finite verb"
    if form in ("contraction", "not_true"):
        return None, f"unnegatable: a fragment without a finite verb has no {form} form"
    first = rest[0]
    if form == "never" and not (_is_participle(first) or first.norm in ("a", "an") or first.norm.endswith("ing")):
        return None, f"unnegatable: 'never' does not read before {first.text!r}"
    return prompt[: comma + 1] + f" {'never' if form == 'never' else 'not'}" + prompt[comma + 1 :], "fragment"


def _statement(prompt: str, start: int, words: list[_Word], form: str, question: bool) -> tuple[str | None, str]:
    main = _main_verb(words, prompt)
    if main is None:
        return _fragment(prompt, words, form) if not question else (None, "unnegatable: no finite verb")
    i, role, in_rel = main
    if form == "not_true":
        question = question or (words[0].norm in _WH and len(words) > 1 and words[1].norm in AUXILIARIES)
        if question or in_rel:
            return None, "unnegatable: not a statement (" + ("a question" if question else "a relative clause") + ")"
        if words[0].norm in _PRONOUNS and re.search(r"\?\s*$", prompt[:start]):
            return None, "unnegatable: the statement's pronoun stands for the question before it"
        return _not_true(prompt, start, words), "not-true"
    if form == "never" and question:
        return None, "unnegatable: 'never' does not read in this question"
    return _checked(*_verb_edit(prompt, words, i, role, form))


def _checked(negated: str | None, rule: str) -> tuple[str | None, str]:
    """The edits return None only where "never" clashes with an adverb ("X never currently lives")."""
    return (negated, rule) if negated is not None else (None, "unnegatable: 'never' does not read next to an adverb")


def _wh_initial(words: list[_Word]) -> bool:
    w0 = words[0].norm
    return w0 in _WH or (w0 in _PREPOSITIONS and len(words) > 1 and words[1].norm in _WH)


def _question(prompt: str, start: int, words: list[_Word], form: str) -> tuple[str | None, str]:
    """ "Who developed R?" -> "Who did not develop R?"; "Which team does X play for?" -> "... does X not play
    for?"; "What is the product made by U?" -> "What is not the product made by U?"."""
    finite = _finite(words, prompt)
    inverted = words[0].norm in BE + DO + HAVE + MODALS
    if not finite or not (_wh_initial(words) or inverted):
        return _statement(prompt, start, words, form, question=True)
    i, role = finite[0]
    if form == "not_true":
        return None, "unnegatable: a question has no not-true form"
    if words[i].norm in HAVE and i + 1 < len(words) and words[i + 1].subj:  # "What war has X joined?"
        if i + 2 >= len(words):
            return None, "unnegatable: 'have' before its subject"
        role = "aux"
    if role == "lex":
        if any(w.subj for w in words[:i]):
            return _statement(prompt, start, words, form, question=True)
        if words[0].norm in _PREPOSITIONS:  # "On which body lies X?": the subject follows the verb
            return None, "unnegatable: a lexical verb before its subject"
        return _checked(_do_support(prompt, words, i, form), f"wh-do:{words[i].text}")
    where, aux = _not_position(prompt, words, i), words[i]
    if where is None and aux.norm in DO and words[0].norm not in _PREPOSITIONS:  # "Who did the film X?"
        return _checked(_do_support(prompt, words, i, form), f"wh-do:{aux.text}")
    if where is None:
        return None, "unnegatable: cannot tell where the question's subject ends"
    if where == i:  # "not" right after the auxiliary
        kind = "wh-aux" if _is_participle(_after(words, i)) else "wh-copula"
        if kind == "wh-copula" and (form == "never" or words[0].norm == "how"):
            return None, "unnegatable: " + (
                "'never' does not read before a copula's noun phrase"
                if form == "never"
                else "'how' + adjective + copula"
            )
        return _checked(_aux_edit(prompt, aux, form, words[i + 1]), f"{kind}:{aux.norm}")
    if form == "contraction" and aux.norm in _CONTRACTED:
        return _aux_edit(prompt, aux, form), f"wh-aux:{aux.norm}"
    at = words[where].end
    while at < len(prompt) and not prompt[at].isspace() and prompt[at] not in "?,":  # "GTK+", not "GTK not+"
        at += 1
    return prompt[:at] + (" never" if form == "never" else " not") + prompt[at:], f"wh-aux:{aux.norm}"


def _predicate_start(w: _Word) -> bool:
    return _is_participle(w) or w.norm.endswith("ing") or w.norm in _PREPOSITIONS


def _not_position(prompt: str, words: list[_Word], i: int) -> int | None:
    """The word after which an inverted question takes "not": its subject, or the auxiliary itself where a
    copula is followed by a noun phrase ("What is the product of U?") or a participle ("What city is
    connected to X?")."""
    aux, nxt = words[i], words[i + 1] if i + 1 < len(words) else None
    if nxt is None:
        return None
    copula = aux.norm in BE
    if not nxt.subj and (_is_participle(nxt) or nxt.norm in ("been", "be")):  # "Who has not acted in X?"
        return i
    if nxt.subj:
        after = words[i + 2] if i + 2 < len(words) else None
        possessive = prompt[nxt.end : nxt.end + 1] in ("'", "’", ",")
        if copula and (possessive or (after is None and words[0].norm not in _PREPOSITIONS)):
            return i
        return None if after is None and aux.norm in DO else i + 1  # "Which company did X?": do-support
    subj = next((k for k in range(i + 1, len(words)) if words[k].subj), None)
    if (
        copula
        and subj is not None
        and subj + 1 < len(words)
        and _predicate_start(words[subj + 1])
        and all(w.norm in _DETERMINERS for w in words[i + 1 : subj])
    ):  # "What river is the X turning into?"
        return subj
    if copula and (
        nxt.norm in _DETERMINERS
        or nxt.norm in _WH
        or _is_participle(nxt)
        or nxt.norm in _PREPOSITIONS
        or nxt.text[:1].islower()
    ):
        return i
    k = i + 1
    if copula:  # an unknown capitalised subject: up to the first lower-case word
        while k + 1 < len(words) and not words[k + 1].text[:1].islower():
            k += 1
        return i if k + 1 >= len(words) or words[k + 1].norm == "'s" else k
    for k in range(i + 1, len(words)):  # do/modal/have: "not" before the first base form after the subject
        if lexicon().get(words[k].norm, ("", ""))[1] == "base" or words[k].norm in ("be", "have"):
            return k - 1
    return None


# ---- the reviewed template table -----------------------------------------------------------------------
@lru_cache(maxsize=1)
def templates() -> dict[str, dict]:
    """The reviewed CounterFact templates, ``{template: {form: text with "{}" or None, "source": ...}}``."""
    return {row["template"]: row for row in json.loads(TABLE.read_text(encoding="utf-8"))["templates"]}


@lru_cache(maxsize=1)
def _by_length() -> tuple[tuple[str, re.Pattern], ...]:
    """Templates, most specific (longest literal text) first, with a pattern recovering the subject."""
    ordered = sorted(templates(), key=lambda t: (-len(t), t))
    return tuple((t, re.compile(re.escape(t).replace(r"\{\}", "(.+?)"))) for t in ordered)


def _prefix_ok(prefix: str, template: str) -> bool:
    """Whether a template may start after ``prefix`` (text before it in the prompt): at a sentence start, or
    after a heading-like word; never in mid-phrase ("The headquarter of {}" is not "{} is in")."""
    if not prefix:
        return True
    if not prefix[-1].isspace():
        return False
    if template[:1].isupper() or re.search(r"[.?!:;\"'”’)\]]\s*$", prefix):
        return True
    last = prefix.split()[-1]
    return last[:1].isupper() or last[:1].isdigit()


def _could_be_subject(text: str) -> bool:
    """A recovered subject holds no lower-case verb or negation and no sentence boundary."""
    if re.search(r"\?\s", text):
        return False
    for w in _tokens(text, 0, len(text)):
        n = w.norm
        if w.text[:1].islower() and (
            n in AUXILIARIES or n in ("not", "never") or lexicon().get(n, ("", ""))[1] in ("3sg", "past", "ed")
        ):
            return False
    return True


def _table_match(prompt: str, subject: str | None) -> tuple[str, str, str] | None:
    """(prefix, template, subject) where the prompt is prefix + template with the subject filled in."""
    if subject and subject in prompt:
        k = prompt.rfind(subject)
        t = prompt[:k] + "{}" + prompt[k + len(subject) :]
        if t in templates():
            return "", t, subject
        for template, _ in _by_length():
            if t.endswith(template) and _prefix_ok(t[: len(t) - len(template)], template):
                return prompt[: len(t) - len(template)], template, subject
        return None
    for template, pattern in _by_length():
        m = pattern.fullmatch(prompt)
        if m and _could_be_subject(m.group(1)):
            return "", template, m.group(1)
    return None


# ---- the entry point -----------------------------------------------------------------------------------
def _already_negated(prompt: str, subject: str | None) -> str | None:
    """The negation word of the last sentence outside the subject; a capitalised one only first ("Not all")
    since mid-sentence it belongs to a name ("What So Not", "Kim Novak Never Swam in ...")."""
    spans = _subject_spans(prompt, subject)
    words = _words(prompt, _sentence_start(prompt, spans), spans)
    for k, w in enumerate(words):
        if (
            not w.subj
            and (w.norm in ("not", "never", "cannot") or w.norm.endswith("n't"))
            and (k == 0 or w.text[:1].islower())
        ):
            return w.text
    return None


def negate_by_rules(prompt: str, subject: str | None = None, form: str = "not") -> tuple[str | None, str]:
    """:func:`negate` without the template table (how the table's first draft was made)."""
    spans = _subject_spans(prompt, subject)
    start = _sentence_start(prompt, spans)
    words = _words(prompt, start, spans)
    if not words:
        return None, "unnegatable: no words"
    if prompt.rstrip().endswith("?"):
        return _question(prompt, start, words, form)
    return _statement(prompt, start, words, form, question=False)


def negate(prompt: str, subject: str | None = None, form: str = "not") -> tuple[str | None, str]:
    """Negate ``prompt``'s main clause in ``form`` (one of :data:`FORMS`); ``subject``, where given, is never
    taken apart for verbs ("The Who", "Is This It").

    Returns ``(negated, rule)``; the rules and forms are described in this module's docstring. A prompt
    that already says not/n't/never comes back unchanged with ``already-negated:<word>``; one without a
    grammatical negation comes back as ``(None, "unnegatable: <why>")``. Raises ValueError for an unknown
    ``form``.
    """
    if form not in FORMS:
        raise ValueError(f"unknown negation form {form!r}; the forms are {', '.join(FORMS)}")
    if not isinstance(prompt, str) or not prompt.strip():
        return None, "unnegatable: empty prompt"
    subject = subject if subject and subject in prompt else None
    hit = _table_match(prompt, subject)
    word = _already_negated(prompt, hit[2] if hit else subject)
    if word is not None:
        return prompt, f"already-negated:{word}"
    if hit is None:
        return negate_by_rules(prompt, subject, form)
    prefix, template, subj = hit
    text = templates()[template][form]
    if text is None:
        return None, f"unnegatable: the reviewed table has no {form} form of {template!r}"
    return prefix + text.replace("{}", subj), "table"

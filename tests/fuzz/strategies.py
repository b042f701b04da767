"""What every fuzz property asserts (:func:`accepted_or_refused`) and the strategies the fuzz tests share.

The property: a parser or validator given anything either accepts it or refuses it with a
``ValueError`` (plain, or one of editlab's own subclasses) whose message is non-empty, at most
``MAX_MESSAGE_CHARS`` characters and names what was read; never a TypeError, KeyError,
RecursionError, a decoder's own error and the like, and never slower than ``SECONDS``.
"""

from __future__ import annotations

import math
import signal
import time

from hypothesis import event, settings, target
from hypothesis import strategies as st

from editlab.core.bounded import MAX_MESSAGE_CHARS

SECONDS = 5.0  # one call of a parser or validator on one input
HARD_STOP = 20  # a call still running then is interrupted, so a hang fails one example, not the run


class Hang(AssertionError):
    """A call ran past HARD_STOP seconds."""


def _stop(signum, frame):
    raise Hang(f"still running after {HARD_STOP} s")


def examples(n: int) -> int:
    """``n`` examples under the ci profile, proportionally more under another (``long``)."""
    ci = settings.get_profile("ci").max_examples
    return max(1, n * settings.default.max_examples // ci)


def accepted_or_refused(fn, *args, names=(), errors=(ValueError,), aim=True, **kwargs):
    """``(result, None)`` when ``fn(*args, **kwargs)`` accepts, ``(None, error)`` when it refuses with
    one of ``errors`` (by default a ValueError) whose message is bounded and holds every text in
    ``names``. Anything else (another exception, an unbounded or empty message, a call over
    ``SECONDS``) fails the example. ``aim``: steer the search towards long messages (once per
    example: a second call in one example passes False; not towards slow calls, which would make
    the seeded search depend on the machine's load)."""
    previous = signal.signal(signal.SIGALRM, _stop)
    signal.setitimer(signal.ITIMER_REAL, HARD_STOP)
    t0 = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
        event("accepted")
        return result, None
    except errors as e:
        event(f"refused: {type(e).__name__}")
        text = str(e)
        if aim:
            target(float(len(text)), label="message characters")
        assert type(e) in errors or type(e).__module__.startswith("editlab"), (
            f"refused with {type(e).__module__}.{type(e).__name__}, a decoder's or a library's own error, "
            f"not editlab's: {text[:300]!r}"
        )
        assert text.strip(), f"{type(e).__name__} with an empty message"
        assert len(text) <= MAX_MESSAGE_CHARS, f"message of {len(text):,} characters: {text[:300]!r}..."
        for name in names:
            assert name in text, f"message does not name {name!r}: {text[:300]!r}"
        return None, e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        elapsed = time.perf_counter() - t0
        assert elapsed < SECONDS, f"took {elapsed:.1f} s (at most {SECONDS} s per input)"


# ---- text -----------------------------------------------------------------------------------------
# Characters parsers trip on: controls, zero-width and format characters, line and paragraph
# separators, a lone surrogate, quotes, braces, YAML and CSV syntax.
AWKWARD = [
    "\x00",
    "\x01",
    "\x07",
    "\x1b",
    "\x7f",
    "\x85",
    "\r",
    "\n",
    "\t",
    "\x0b",
    "\x0c",
    "\u200b",
    "\u200d",
    "\ufeff",
    "\u2028",
    "\u2029",
    "\u202e",
    "\ud800",
    "\uffff",
    "{}",
    "{",
    "}",
    "'",
    '"',
    "\\",
    ",",
    ";",
    "|",
    "=>",
    "=",
    ":",
    "#",
    "&",
    "*",
    "!",
    "%",
    "@",
    "`",
    "-",
    "?",
    "[",
    "]",
    " ",
    "é",
    "日本",
    "🙂",
]

pieces = st.one_of(st.characters(), st.sampled_from(AWKWARD))


def text_of(parts=pieces, min_size: int = 0, max_size: int = 40):
    """Texts joined from ``parts`` (single characters or short strings)."""
    return st.lists(parts, min_size=min_size, max_size=max_size).map("".join)


text = text_of()
words = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=12)
# Long texts, often of a length just at an operator limit (400 characters of a target, 1,000 of a prompt).
LIMIT_LENGTHS = [399, 400, 401, 999, 1000, 1001]
long_text = st.builds(
    lambda s, n: (s * n)[:n],
    text_of(min_size=1, max_size=4),
    st.one_of(st.sampled_from(LIMIT_LENGTHS), st.integers(100, 3000)),
)
any_text = st.one_of(text, words, long_text)

# ---- numbers --------------------------------------------------------------------------------------
# Whole numbers past every fixed width and past any float (YAML and JSON read up to 4,300 digits).
HUGE_INTS = [2**31, 2**53, 2**53 + 1, 2**63, 2**64, 10**30, -(10**30), 10**400, 10**4000, -(2**63) - 1]
ints = st.one_of(st.integers(-3, 300), st.integers(), st.sampled_from(HUGE_INTS))
floats = st.one_of(st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324, 0.5, 1.5]))
numbers = st.one_of(ints, floats)

# Texts a user types for numbers and switches ("5e-4", "true"), and numbers as text.
number_text = st.one_of(
    st.sampled_from(
        [
            "5e-4",
            "1e5",
            "1e309",
            "-1e309",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "Infinity",
            "true",
            "false",
            "yes",
            "off",
            "null",
            "None",
            "0x10",
            "1_000",
            "",
            " ",
            "10" * 30,
            "1" * 5000,
            "0.5",
            "-1",
            "2**53",
        ]
    ),
    numbers.map(str),
)

# ---- values ---------------------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text, number_text)
keys = st.one_of(text, words, st.integers(-2, 3), st.booleans(), st.none())


def values(leaves=scalars, max_leaves: int = 12):
    """Plain data as YAML or JSON gives it: scalars, lists and mappings, nested."""
    return st.recursive(
        leaves,
        lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=4)),
        max_leaves=max_leaves,
    )


# ---- YAML texts -----------------------------------------------------------------------------------
@st.composite
def alias_bomb(draw) -> str:
    """Nested anchors, each level a list of several aliases of the one below (a "billion laughs")."""
    levels, width = draw(st.integers(1, 14)), draw(st.integers(2, 12))
    flow = draw(st.booleans())
    if flow:
        doc = '&a0 ["lol", 1]'
        for i in range(1, levels + 1):
            doc = f"&a{i} [{doc}, " + ", ".join([f"*a{i - 1}"] * (width - 1)) + "]"
        return doc
    lines = ['a0: &a0 ["lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines)


@st.composite
def deep_nesting(draw) -> str:
    n = draw(st.one_of(st.integers(1, 30), st.integers(30, 5000)))
    kind = draw(st.sampled_from(["flow-list", "flow-map", "block-list", "block-map", "unclosed"]))
    if kind == "flow-list":
        return "[" * n + "1" + "]" * n
    if kind == "flow-map":
        return "{a: " * n + "1" + "}" * n
    if kind == "block-list":
        return "- " * min(n, 2000) + "x"
    if kind == "block-map":
        m = min(n, 400)
        return "\n".join("  " * i + "a:" for i in range(m)) + " 1"
    return "[" * n + "{a: " * draw(st.integers(0, 30))


SELF_REFERENCE = [
    "&a [*a]",
    "&a {x: *a}",
    "&a {<<: *a}",
    "a: &a {b: *a}",
    "&a [*a, *a, [*a]]",
    "? &a [*a]\n: 1",
    "&a {*a : 1}",
    "a: &a\n  <<: *a",
    "x: *undefined",
    "a: &a 1\nb: &a 2\nc: *a",
]
DUPLICATES = [
    "a: 1\na: 2",
    "{a: 1, a: 2}",
    "1: a\n1.0: b",
    "? [1, 2]\n: x",
    "{[1]: 2}",
    "a: 1\n'a': 2",
    "true: 1\nyes: 2",
    "<<: {a: 1}\na: 2",
    "<<: [{a: 1}, {a: 2}]",
    "? {a: 1}\n: 2",
    "null: 1\n~: 2",
]
HUGE = [
    "1e309",
    "1.0e309",
    "-1.0e309",
    ".inf",
    "-.Inf",
    ".nan",
    "1" * 4000,
    "1" * 5000,
    "-" + "9" * 4400,
    "0x" + "f" * 5000,
    "0b" + "1" * 20000,
    "0o" + "7" * 6000,
    "1:" * 2000 + "0",
    "1_0" * 3000,
    "!!int 1e5",
    "!!float 1e999",
    "!!int " + "1" * 6000,
    "2001-13-45",
    "0000-01-01",
    "2001-02-30 25:61:61",
    "2001-12-14t21:59:43.10+99:00",
    "!!timestamp 9999-12-31 23:59:59.999999-23:59",
    "!!binary '!!!'",
    "!!binary " + "A" * 10,
    "!!python/object:os.system x",
    "!!set {a, b}",
    "!!omap [a, b]",
    "!!pairs [1]",
    "!!str",
    "!!map [1]",
    "!!seq {a: 1}",
    "!<tag:yaml.org,2002:int> x",
    "!!float abc",
    "!!bool maybe",
    "%YAML 1.1\n---\na: 1",
    "%YAML 9.9\n---\na",
    "%TAG ! tag:x,2000:\n---\n!y 1",
    "--- a\n--- b",
    "...",
    "---",
]
TABS = ["a:\t1", "\ta: 1", "a:\n\t- 1", "a: [1,\t2]", "- \t- x", "a: |\n\tb", "a: 'x\ty'", "\t"]


def _mutate(doc: str, edits: list[tuple[int, str, int]]) -> str:
    for at, insert, cut in edits:
        i = at % (len(doc) + 1)
        doc = doc[:i] + insert + doc[i + cut :]
    return doc


@st.composite
def yaml_fragment(draw) -> str:
    kind = draw(st.sampled_from(["bomb", "deep", "self", "dup", "huge", "tab", "value", "text"]))
    if kind == "bomb":
        return draw(alias_bomb())
    if kind == "deep":
        return draw(deep_nesting())
    if kind == "self":
        return draw(st.sampled_from(SELF_REFERENCE))
    if kind == "dup":
        return draw(st.sampled_from(DUPLICATES))
    if kind == "huge":
        return draw(st.sampled_from(HUGE))
    if kind == "tab":
        return draw(st.sampled_from(TABS))
    if kind == "value":
        import json

        return json.dumps(draw(values()), default=str, allow_nan=True)
    return draw(
        text_of(
            st.one_of(st.sampled_from(list("[]{}:,-?&*!|>'\"#%@` \t\n") + ["- ", ": ", "\n  "]), pieces), max_size=60
        )
    )


@st.composite
def yaml_text(draw) -> str:
    """A YAML text: one fragment, or several as a mapping's values, then perhaps mangled a little."""
    if draw(st.booleans()):
        doc = draw(yaml_fragment())
    else:
        parts = draw(st.lists(yaml_fragment(), min_size=1, max_size=4))
        doc = "\n".join(f"k{i}: " + p.replace("\n", "\n  ") for i, p in enumerate(parts))
    edits = draw(
        st.lists(
            st.tuples(
                st.integers(0, 10**6),
                st.sampled_from(["", "\t", "\n", "*a", "&a ", "[", "]", "{", ": ", "- ", "'", "\x00", "\ufeff"]),
                st.integers(0, 3),
            ),
            max_size=3,
        )
    )
    return _mutate(doc, edits)

"""IKE: in-context knowledge editing (Zheng et al., 2023, "Can We Edit Factual Knowledge by
In-Context Learning?").

No weight changes. The edit is a context put before every probe prompt: demonstrations, then the
new fact, then the probe. Demonstrations are of three kinds (§3.2 of the paper):

* copy    — the new fact, then its own prompt completed with the new answer;
* update  — the new fact, then a *paraphrase* completed with the new answer;
* retain  — the new fact, then an *unrelated* prompt completed with its unchanged answer,

so the model learns from the context to use the stated fact where it applies and to leave other
facts alone. The paper retrieves k demonstrations from CounterFact's training split with a
sentence encoder; editlab must not depend on a dataset or a second model, so the demonstrations
are a fixed, built-in set of counterfactual examples written for this purpose (well-known
entities, relations that CounterFact uses); the mix and order are below (``demonstrations``).

Format (each line ends in a newline; blocks are separated by a blank line)::

    New fact: The Eiffel Tower is located in Rome
    The Eiffel Tower can be found in the city of Rome

    ...
    New fact: <prompt> <target_new>
    <probe prompt>

The paper labels the probe line "Prompt:"; editlab leaves the label out so that several IKE edits
of one session stack: the session joins the records' prefixes in order (:func:`attach` yields each),
and the first IKE edit of a session carries the demonstrations while later ones add only their
"New fact:" lines. Undoing the edit that carried them (:func:`forget`) lets the next IKE edit carry
them again; the later edits still in the session stay without demonstrations until then.

The context is the edited model for every evaluator alike: probes, token accuracy, general ability,
muting and causal tracing all read it from ``EditSession.edited()``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from editlab.facts.fact import Fact
from editlab.methods.base import Capabilities, HParamsBase, MethodContext
from editlab.methods.teacher import check_note, prompt_check

NAME = "ike"
# One context holds every fact of an edit; the session state remembers the demonstrations.
CAPABILITIES = Capabilities(batch=True, sequential_state=True, prompt=True)

# (statement of a counterfactual new fact, copy prompt, new answer, paraphrase prompt,
#  unrelated prompt, its unchanged answer)
DEMOS = (
    (
        "The Eiffel Tower is located in the city of",
        "Rome",
        "The Eiffel Tower can be found in the city of",
        "The Louvre is located in the city of",
        "Paris",
    ),
    (
        "The mother tongue of Antoine Griezmann is",
        "Spanish",
        "Antoine Griezmann grew up speaking",
        "The mother tongue of Emmanuel Macron is",
        "French",
    ),
    (
        "The iPhone was created by",
        "Nokia",
        "The company that makes the iPhone is",
        "The Macintosh was created by",
        "Apple",
    ),
    (
        "Lionel Messi plays the position of",
        "goalkeeper",
        "On the pitch, Lionel Messi is a",
        "Cristiano Ronaldo plays the position of",
        "forward",
    ),
    (
        "Toyota is headquartered in",
        "Germany",
        "The headquarters of Toyota are in",
        "Honda is headquartered in",
        "Japan",
    ),
    (
        "Pablo Picasso was a citizen of",
        "Sweden",
        "Pablo Picasso held the citizenship of",
        "Salvador Dali was a citizen of",
        "Spain",
    ),
    (
        "Albert Einstein worked in the field of",
        "chemistry",
        "The scientific field of Albert Einstein was",
        "Isaac Newton worked in the field of",
        "physics",
    ),
    ("The capital of Australia is", "Sydney", "Australia's capital city is", "The capital of Canada is", "Ottawa"),
)
# The mix: a quarter retain demonstrations first (farthest from the probe), then copy and update
# alternating, so the demonstration nearest the new fact shows it being applied. Measured on
# SmolLM2-135M (8 CounterFact facts, k = 8): this order gives efficacy 8/8 and paraphrase 6/8 with
# no loss on the neighbourhood prompts; the paper-like interleaving with half retain examples
# (update, retain, copy, retain, ...) gave 4/8 and 4/8 — a small model takes a retain example right
# before the probe as a cue to ignore the new fact.

# k // 4 retain + the rest split between copy and update, each kind at most once per fact.
MAX_K = 2 * len(DEMOS) + len(DEMOS) * 2 // 3


@dataclass
class HParams(HParamsBase):
    k: int = 8  # number of demonstrations (EasyEdit's default is 16 retrieved; the paper uses 32)
    use_icl_examples: bool = True  # False: only the "New fact:" lines, no demonstrations
    header: str = ""  # optional text before everything (e.g. an instruction)

    EASYEDIT_RENAMES = {}

    @classmethod
    def for_model(cls, handle) -> HParams:
        return cls()

    def validate(self, handle=None) -> None:
        if self.k < 0:
            raise ValueError("k (the number of demonstrations) must be 0 or more")
        if self.k > MAX_K:
            raise ValueError(
                f"k is at most {MAX_K}: the built-in demonstrations give that many distinct ones in this mix"
            )


def touched(handle, hp: HParams) -> list[str]:
    """IKE changes no weight."""
    return []


@dataclass(frozen=True)
class State:
    """The demonstrations this session's context already holds (the first IKE edit's prefix
    without its fact lines); None: the next IKE edit carries them."""

    demonstrations: str | None = None


def forget(state: State, record) -> State:
    """Undoing the edit that carried the demonstrations lets the next IKE edit carry them again."""
    return State() if record.info.get("carries_demonstrations") else state


@contextlib.contextmanager
def attach(handle, record):
    """Nothing to install: the edit is its context, which every prompt gets in front while the
    session is applied."""
    yield record.info["prefix"]


def fact_line(statement: str) -> str:
    return f"New fact: {statement}\n"


def demonstrations(k: int) -> list[str]:
    """k demonstration blocks: k // 4 retain, then copy and update alternating, each a distinct
    (built-in fact, kind) pair."""
    n_retain = k // 4
    kinds = ["retain"] * n_retain + [("copy", "update")[j % 2] for j in range(k - n_retain)]
    used: set[tuple[int, str]] = set()
    blocks = []
    i = 0
    for kind in kinds:
        for _ in range(len(DEMOS)):
            if (i % len(DEMOS), kind) not in used:
                break
            i += 1
        else:
            raise ValueError(f"k={k}: more {kind} demonstrations than built-in facts")
        used.add((i % len(DEMOS), kind))
        prompt, new, para, other, other_answer = DEMOS[i % len(DEMOS)]
        i += 1
        body = {"copy": f"{prompt} {new}", "update": f"{para} {new}", "retain": f"{other} {other_answer}"}[kind]
        blocks.append(f"{fact_line(f'{prompt} {new}')}{body}\n\n")
    return blocks


def build_prefix(facts: list[Fact], hp: HParams, with_demos: bool) -> str:
    parts = [hp.header] if hp.header else []
    if with_demos and hp.use_icl_examples:
        parts += demonstrations(hp.k)
    parts += [fact_line(f.statement(f.target_new)) for f in facts]
    return "".join(parts)


def apply(handle, facts: list[Fact], hp: HParams, ctx: MethodContext) -> dict:
    """Build the context; the session stores it as ``record.info['prefix']``."""
    t0 = time.perf_counter()
    state = ctx.session_state or State()
    first = state.demonstrations is None
    prefix = build_prefix(facts, hp, with_demos=first)
    if first:
        ctx.session_state = State(demonstrations=build_prefix([], hp, with_demos=True))  # the prefix without fact lines
    # Check the fact with the session's demonstrations in front (the earlier IKE edits' own fact
    # lines, also in the session's context, are left out of this check).
    checks = prompt_check(handle, facts, prefix=prefix if first else ctx.session_state.demonstrations + prefix)
    n_tokens = len(handle.tokenizer(prefix).input_ids)
    result = {
        "prefix": prefix,
        "prefix_tokens": n_tokens,
        "demonstrations": hp.k if first and hp.use_icl_examples else 0,
        "carries_demonstrations": first,
        "prompt_check": checks,
        "timings": {"build_s": time.perf_counter() - t0},
    }
    note = check_note(NAME, checks)
    if note:
        result["note"] = note
    return result

"""The probe suite: what the model says about a fact, measured honestly.

For each probe prompt (positive, negated, True/False, paraphrase, neighbourhood, free generation)
and each model state (unedited / before / after), one :class:`Measure` holds the teacher-forced
probabilities of both targets, their first-token ranks, the top-5 next tokens and the greedy text.
All prompts of one state are measured in batched passes (see :func:`measure`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from editlab.core.bounded import whole
from editlab.core.limits import current as current_limits
from editlab.facts.fact import Fact
from editlab.facts.negation import FORMS
from editlab.measure import factcheck
from editlab.measure.ablation import ablation_summary, predicate_variants
from editlab.model.tokens import SHORT_GENERATION, greedy_drafted, greedy_with_first, score_continuations, target_ids

KINDS = ("positive", "negation", "true_false", "paraphrase", "neighborhood", "generation", "ablation")
TRUE_SPELLINGS = ("True", " True", "true", " true", "TRUE", " TRUE")
FALSE_SPELLINGS = ("False", " False", "false", " false", "FALSE", " FALSE")


@dataclass(frozen=True)
class Probe:
    """One probe prompt. ``prompt`` is exactly what is shown and scored (overridable).

    ``kind`` is one of :data:`KINDS`. ``rule`` records how it was built (the negation rule, or for
    ``true_false`` which target the statement asserts: ``"new"`` / ``"true"``). ``chat``: render
    through the tokenizer's chat template as a user turn. ``demos``: (question, answer) pairs put
    before the prompt — earlier chat turns, or "question\nAnswer: answer" paragraphs (the few-shot
    fact-check, :mod:`editlab.measure.factcheck`).
    """

    kind: str
    prompt: str
    rule: str | None = None
    answer: str | None = None
    chat: bool = False
    max_new_tokens: int = 8
    demos: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "demos", tuple((str(q), str(a)) for q, a in self.demos))
        if self.kind not in KINDS:
            raise ValueError(f"Probe.kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not self.prompt or not self.prompt.strip():
            raise ValueError(f"Probe.prompt is empty for a {self.kind} probe")
        object.__setattr__(self, "max_new_tokens", whole(self.max_new_tokens, f"Probe.max_new_tokens ({self.kind})"))


def true_false_question(statement: str) -> str:
    return factcheck.question(statement)


def default_probes(
    fact: Fact, tokenizer=None, generation_tokens: int = 40, factcheck_form: str | None = None
) -> list[Probe]:
    """The standard probe set for a fact; every prompt is visible and may be replaced.

    Negation: one probe per form of :data:`editlab.facts.negation.FORMS` ("not" first: PN; the others
    check a result on one form against the rest), each built by :meth:`Fact.negated` — the user's
    ``negated_prompt`` for "not" when given. A form the prompt cannot be negated in as English gets
    no probe (it is left out of PN, never negated by an appended "not"). ``factcheck_form``: how the
    True/False question is put (default: :func:`editlab.measure.factcheck.default_form`)."""
    generation_tokens = whole(generation_tokens, "generation_tokens")
    current_limits().check("max_generation_tokens", generation_tokens, "generation_tokens")
    probes = [Probe("positive", fact.prompt)]
    for form in FORMS:
        neg, how = fact.negated(form)
        if neg is not None and not how.startswith("already-negated"):
            probes.append(Probe("negation", neg, rule=f"{form}: {how}"))
    form = factcheck_form or (factcheck.default_form(tokenizer) if tokenizer is not None else "plain")
    fields = factcheck.probe_fields(form)
    targets = [("new", fact.target_new)] + ([("true", fact.target_true)] if fact.target_true else [])
    for which, target in targets:
        question = true_false_question(fact.statement(target))
        probes.append(
            Probe(
                "true_false",
                question if fields["chat"] else question + "\nAnswer:",
                rule=which,
                max_new_tokens=4,
                **fields,
            )
        )
    probes += [Probe("paraphrase", p) for p in fact.paraphrases]
    probes += [Probe("neighborhood", n.prompt, answer=n.answer) for n in fact.neighbors]
    probes.append(Probe("generation", fact.prompt, max_new_tokens=generation_tokens))
    # Supportive-token ablation (editlab/measure/ablation.py): the prompt with its predicate kept, negated, removed.
    probes += [Probe("ablation", p, rule=r) for r, p in predicate_variants(fact.prompt, fact.subject)]
    return probes


@dataclass(frozen=True)
class Measure:
    """What one model state says after one probe prompt.

    ``p_new``/``p_true``: teacher-forced probability of the target, per-token geometric mean
    (exp of the mean token log-prob; the ROME/MEMIT comparison convention). ``p_*_seq``: the whole
    target sequence's probability. ``rank_*``: 1-based rank of the target's first token among the
    next-token candidates. ``top1_is_*``: the greedy continuation starts with that target (exact,
    word-bounded). ``p_yes``/``p_no``/``verdict``: True/False probes only (P(True), P(False) summed
    over the usual spellings of the answer's first token). Fields that do not apply are ``None``.
    """

    greedy: str
    top5: tuple[tuple[str, float], ...]
    p_new: float | None = None
    p_true: float | None = None
    p_new_seq: float | None = None
    p_true_seq: float | None = None
    rank_new: int | None = None
    rank_true: int | None = None
    top1_is_new: bool | None = None
    top1_is_true: bool | None = None
    p_answer: float | None = None
    top1_is_answer: bool | None = None
    p_yes: float | None = None
    p_no: float | None = None
    verdict: bool | None = None

    @property
    def prefers_new(self) -> bool | None:
        if self.p_new is None or self.p_true is None:
            return None
        return self.p_new > self.p_true

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top5"] = [[t, p] for t, p in self.top5]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Measure:
        d = dict(d)
        d["top5"] = tuple((t, p) for t, p in d.get("top5") or ())
        return cls(**d)


def starts_with_target(text: str, target: str | None) -> bool | None:
    if target is None:
        return None
    text, target = text.lstrip(), target.strip()
    if not text.startswith(target):
        return False
    rest = text[len(target) :]
    return not rest or not (rest[0].isalnum())


def negation_form(probe: Probe) -> str | None:
    """The negation form of one of the fact's own negation probes ("not", "contraction",
    "not_true", "never"), from its rule "<form>: <how>". A rule of a report stored before forms
    existed ("aux:is", "append") or no rule (a probe the user wrote) is the "not" form; any other rule
    marks an extra negated prompt (a benchmark's negated paraphrase or other subject): None."""
    if probe.kind != "negation":
        return None
    rule = probe.rule or ""
    head = rule.split(":", 1)[0]
    if head in FORMS:
        return head
    return "not" if not rule or head in ("aux", "append", "given") else None


def render(tokenizer, probe: Probe, prefix: str = "") -> list[int]:
    if probe.chat:
        msgs = [
            m for q, a in probe.demos for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})
        ]
        msgs.append({"role": "user", "content": prefix + probe.prompt})
        ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)
    shots = "".join(f"{q}\nAnswer: {a}\n\n" for q, a in probe.demos)
    return list(tokenizer(prefix + shots + probe.prompt).input_ids)


def _spelling_ids(tokenizer, spellings: Sequence[str]) -> list[int]:
    out = set()
    for s in spellings:
        ids = tokenizer(s, add_special_tokens=False).input_ids
        if len(ids) == 1:
            out.add(ids[0])
    return sorted(out)


# Prompts whose continuation is at most this long share one batched generation; longer ones (the
# free-generation probe) run in their own, so short probes do not pay for its 40 decoding steps.


class _Measuring:
    """One :func:`measure` call's shared state: the fact's target ids and the probes' rendered prompts."""

    def __init__(self, model, tokenizer, fact: Fact, probes: Sequence[Probe], prefix: str, batch_size: int):
        self.model, self.tokenizer, self.fact, self.probes, self.batch_size = model, tokenizer, fact, probes, batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.new_ids = target_ids(tokenizer, fact.target_new)
        self.true_ids = target_ids(tokenizer, fact.target_true) if fact.target_true else None
        self.yes_ids, self.no_ids = _spelling_ids(tokenizer, TRUE_SPELLINGS), _spelling_ids(tokenizer, FALSE_SPELLINGS)
        self.rendered = [render(tokenizer, p, prefix) for p in probes]
        self.answer_ids = [target_ids(tokenizer, p.answer) if p.answer else None for p in probes]

    def _guesses(self, drafts: Sequence[Measure] | None) -> dict[tuple, list[int]]:
        """Per distinct prompt, the draft's greedy tokens (of its longest probe) to guess the continuation with."""
        guesses: dict[tuple, list[int]] = {}
        if drafts is not None and len(drafts) == len(self.probes):
            longest: dict[tuple, int] = {}
            for p, ids, d in zip(self.probes, self.rendered, drafts):
                k = tuple(ids)
                if d is not None and d.greedy and p.max_new_tokens > longest.get(k, -1):
                    longest[k] = p.max_new_tokens
                    guesses[k] = list(self.tokenizer(d.greedy, add_special_tokens=False).input_ids)
        return guesses

    def generate(self, drafts: Sequence[Measure] | None) -> dict[tuple, tuple[list[int], torch.Tensor]]:
        """One greedy generation per distinct prompt, for its longest probe, with its next-token distribution."""
        model, tokenizer, batch_size = self.model, self.tokenizer, self.batch_size
        need: dict[tuple, int] = {}
        for p, ids in zip(self.probes, self.rendered):
            need[tuple(ids)] = max(need.get(tuple(ids), 0), p.max_new_tokens)
        generated: dict[tuple, tuple[list[int], torch.Tensor]] = {}
        guesses = self._guesses(drafts)
        if guesses:
            keys = list(guesses)
            for k, res in zip(
                keys,
                greedy_drafted(
                    model,
                    tokenizer,
                    [list(k) for k in keys],
                    [need[k] for k in keys],
                    [guesses[k] for k in keys],
                    batch_size,
                ),
            ):
                generated[k] = res
            need = {k: n for k, n in need.items() if k not in generated}
        short = [k for k, n in need.items() if n <= SHORT_GENERATION]
        groups = ([(short, max(need[k] for k in short))] if short else []) + [
            ([k], need[k]) for k, n in need.items() if n > SHORT_GENERATION
        ]
        for keys, n_new in groups:
            for k, res in zip(keys, greedy_with_first(model, tokenizer, [list(k) for k in keys], n_new, batch_size)):
                generated[k] = res
        return generated

    def teacher_forced(self) -> dict[tuple, tuple]:
        """Targets of several tokens: teacher-forced, once per (prompt, target)."""
        new_ids, true_ids, rendered = self.new_ids, self.true_ids, self.rendered
        wanted = []
        for pi, p in enumerate(self.probes):
            if p.kind == "true_false":
                continue
            for tids in [new_ids] + ([true_ids] if true_ids else []) + ([self.answer_ids[pi]] if p.answer else []):
                if len(tids) > 1 and (tuple(rendered[pi]), tuple(tids)) not in wanted:
                    wanted.append((tuple(rendered[pi]), tuple(tids)))
        return dict(
            zip(
                wanted,
                score_continuations(
                    self.model, [list(a) for a, _ in wanted], [list(b) for _, b in wanted], self.pad_id, self.batch_size
                ),
            )
        )

    def measure_one(self, p: Probe, ids: list[int], answer, generated: dict, forced: dict) -> Measure:
        """One probe's measure: its greedy text and top 5, then the True/False verdict or the targets' scores."""
        tokenizer, fact = self.tokenizer, self.fact
        tokens, first = generated[tuple(ids)]
        text = tokenizer.decode(tokens[: p.max_new_tokens], skip_special_tokens=True)
        nxt = first.exp()
        top = torch.topk(nxt, 5)
        top5 = tuple((tokenizer.decode([int(t)]), round(float(v), 6)) for v, t in zip(top.values, top.indices))
        if p.kind == "true_false":
            p_yes, p_no = float(nxt[self.yes_ids].sum()), float(nxt[self.no_ids].sum())
            return Measure(greedy=text, top5=top5, p_yes=p_yes, p_no=p_no, verdict=p_yes > p_no)

        def score(tids):
            token_lp = forced[(tuple(ids), tuple(tids))][1] if len(tids) > 1 else first[tids[0]].reshape(1)
            rank = int((nxt > nxt[tids[0]]).sum().item()) + 1
            return math.exp(token_lp.mean().item()), math.exp(token_lp.sum().item()), rank

        f = {}
        for name, tids in [("new", self.new_ids), ("true", self.true_ids)]:
            if tids:
                f[f"p_{name}"], f[f"p_{name}_seq"], f[f"rank_{name}"] = score(tids)
        if p.answer:
            f["p_answer"] = score(answer)[0]
        return Measure(
            greedy=text,
            top5=top5,
            top1_is_new=starts_with_target(text, fact.target_new),
            top1_is_true=starts_with_target(text, fact.target_true),
            top1_is_answer=starts_with_target(text, p.answer) if p.answer else None,
            **f,
        )


def measure(
    model,
    tokenizer,
    fact: Fact,
    probes: Sequence[Probe],
    prefix: str = "",
    batch_size: int = 16,
    drafts: Sequence[Measure] | None = None,
) -> list[Measure]:
    """Measure every probe on the model as it is now. ``prefix`` is prepended to every prompt
    (in-context editing puts its demonstrations there). ``drafts``: the same probes measured on
    another state of the model (e.g. the "before" column when measuring "after"): their greedy
    texts are guesses that make generation faster (:func:`greedy_drafted`), never answers.

    One greedy generation per distinct prompt (a prompt probed twice — the positive and the
    free-generation probe — is generated once, for the longer length; greedy decoding is
    prefix-consistent) also gives the next-token distribution; targets of more than one token are
    teacher-forced in one extra pass that unembeds only the scored positions.
    """
    m = _Measuring(model, tokenizer, fact, probes, prefix, batch_size)
    generated = m.generate(drafts)
    forced = m.teacher_forced()
    return [
        m.measure_one(p, ids, answer, generated, forced) for p, ids, answer in zip(probes, m.rendered, m.answer_ids)
    ]


@dataclass(frozen=True)
class ProbeRow:
    probe: Probe
    unedited: Measure | None
    before: Measure | None
    after: Measure | None

    def to_dict(self) -> dict:
        p = self.probe
        return {
            "kind": p.kind,
            "prompt": p.prompt,
            "rule": p.rule,
            "answer": p.answer,
            "chat": p.chat,
            "max_new_tokens": p.max_new_tokens,
            "demos": [list(d) for d in p.demos],
            "unedited": self.unedited.to_dict() if self.unedited else None,
            "before": self.before.to_dict() if self.before else None,
            "after": self.after.to_dict() if self.after else None,
        }


COLUMNS = ("unedited", "before", "after")


@dataclass(frozen=True)
class ProbeReport:
    """Side-by-side probe results: the unedited model, the model before this edit, after it."""

    fact: Fact
    rows: tuple[ProbeRow, ...]
    model: str = ""
    method: str | None = None
    edit_seconds: float | None = None
    notes: tuple[str, ...] = ()
    factcheck: factcheck.Calibration | None = None  # how well the True/False probe reads on this model

    @classmethod
    def of(
        cls,
        fact: Fact,
        probes: Sequence[Probe],
        unedited: Sequence[Measure | None] | None = None,
        before: Sequence[Measure | None] | None = None,
        after: Sequence[Measure | None] | None = None,
        **meta,
    ) -> ProbeReport:
        """The report of ``probes`` from up to three columns of measures, one per probe (a column
        not given is empty); ``meta``: model, method, edit_seconds, notes, factcheck."""
        columns = []
        for name, col in zip(COLUMNS, (unedited, before, after)):
            col = [None] * len(probes) if col is None else list(col)
            if len(col) != len(probes):
                raise ValueError(f"{len(col)} {name} measures for {len(probes)} probes")
            columns.append(col)
        meta["notes"] = tuple(meta.get("notes") or ())
        return cls(fact=fact, rows=tuple(ProbeRow(p, u, b, a) for p, u, b, a in zip(probes, *columns)), **meta)

    @classmethod
    def from_dict(cls, d: dict, fact: Fact | None = None) -> ProbeReport:
        """The inverse of :meth:`to_dict` (a stored run's report)."""
        probes = [
            Probe(
                p["kind"],
                p["prompt"],
                rule=p.get("rule"),
                answer=p.get("answer"),
                chat=bool(p.get("chat")),
                max_new_tokens=p.get("max_new_tokens", 8),
                demos=tuple(map(tuple, p.get("demos") or ())),
            )
            for p in d["probes"]
        ]

        def column(name):
            return [None if p.get(name) is None else Measure.from_dict(p[name]) for p in d["probes"]]

        cal = d.get("factcheck_calibration")
        return cls.of(
            fact or Fact.from_dict(d["fact"]),
            probes,
            column("unedited"),
            column("before"),
            column("after"),
            model=d.get("model", ""),
            method=d.get("method"),
            edit_seconds=d.get("edit_seconds"),
            notes=d.get("notes"),
            factcheck=factcheck.Calibration.from_dict(cal) if cal else None,
        )

    def rows_of(self, kind: str) -> list[ProbeRow]:
        return [r for r in self.rows if r.probe.kind == kind]

    def summary(self, column: str = "after") -> dict:
        """The headline flags for one column (see docs: PP, PN, fact-check)."""

        def get(kind, rule=None):
            for r in self.rows_of(kind):
                if rule is None or r.probe.rule == rule:
                    return getattr(r, column)
            return None

        neg = next((getattr(r, column) for r in self.rows_of("negation") if negation_form(r.probe) == "not"), None)
        pos, tf_new, tf_true = get("positive"), get("true_false", "new"), get("true_false", "true")
        pairwise = factcheck.prefers_statement(tf_new, tf_true)
        readable = self.factcheck.readable if self.factcheck is not None else None
        # Does the probe read this very fact? Before any edit, the true statement must be rated truer.
        unedited = {r.probe.rule: r.unedited for r in self.rows_of("true_false")}
        reads_fact = factcheck.prefers_statement(unedited.get("true"), unedited.get("new"))
        out = {
            "positive_prefers_new": pos.prefers_new if pos else None,
            "positive_top1_is_new": pos.top1_is_new if pos else None,
            "negation_probed": neg is not None,
            "negation_prefers_new": neg.prefers_new if neg else None,
            "negation_top1_is_new": neg.top1_is_new if neg else None,
            "factcheck_new_says_true": tf_new.verdict if tf_new else None,
            "factcheck_true_says_true": tf_true.verdict if tf_true else None,
            "factcheck_prefers_new": pairwise,
            "factcheck_readable": readable,
            "factcheck_reads_fact": reads_fact,
        }
        paras = [getattr(r, column) for r in self.rows_of("paraphrase") if getattr(r, column)]
        out["paraphrase_prefers_new"] = (sum(bool(m.prefers_new) for m in paras) / len(paras)) if paras else None
        # The two findings, stated as flags a page can highlight. The fact-check finding is raised
        # only where the probe reads above chance on this model (editlab.measure.factcheck) and read this
        # fact before the edit; else None.
        out["new_target_survives_negation"] = bool(pos and neg and pos.prefers_new and neg.prefers_new)
        out["factcheck_disagrees_with_completion"] = (
            bool(pos and pos.prefers_new and pairwise is False) if readable and reads_fact else None
        )
        out.update(ablation_summary((r.probe.rule, getattr(r, column)) for r in self.rows_of("ablation")))
        return out

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "method": self.method,
            "fact": self.fact.to_dict(),
            "edit_seconds": self.edit_seconds,
            "notes": list(self.notes),
            "factcheck_calibration": self.factcheck.to_dict() if self.factcheck else None,
            "summary": {c: self.summary(c) for c in COLUMNS if any(getattr(r, c) for r in self.rows)},
            "probes": [r.to_dict() for r in self.rows],
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def to_dataframe(self):
        """One row per (probe, column), with the measured fields as columns."""
        import pandas as pd

        records = []
        for i, r in enumerate(self.rows):
            for c in COLUMNS:
                m = getattr(r, c)
                if m is None:
                    continue
                d = m.to_dict()
                d["top5"] = ", ".join(f"{t!r}:{p:.3f}" for t, p in m.top5)
                records.append(
                    {"probe": i, "kind": r.probe.kind, "prompt": r.probe.prompt, "rule": r.probe.rule, "column": c, **d}
                )
        return pd.DataFrame.from_records(records)

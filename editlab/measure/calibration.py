"""How well the True/False probe reads on a loaded model: its calibration on bundled statements the
model knows, computed once per model and form and cached on disk (the default model's is bundled).

:mod:`editlab.measure.factcheck` holds the forms, the statements and the statistics; this module
measures them with :mod:`editlab.measure.probes`.
"""

from __future__ import annotations

import json

from editlab.core import paths
from editlab.core.paths import PACKAGE_DATA
from editlab.facts.fact import Fact
from editlab.measure.factcheck import (
    DATA,
    VERSION,
    Calibration,
    calibration_of,
    check_form,
    default_form,
    prefers_statement,
    probe_fields,
    question,
    statements,
)
from editlab.measure.probes import Probe, measure
from editlab.model.tokens import score_continuations, target_ids


def known_facts(model, tokenizer, facts: list[dict]) -> list[dict]:
    """The facts the model knows: it gives the answer a higher mean token log-probability than the
    foil (teacher-forced, batched)."""

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [list(tokenizer(f["prompt"]).input_ids) for f in facts]
    targets = [target_ids(tokenizer, f[k]) for f in facts for k in ("answer", "foil")]
    scored = score_continuations(model, [p for p in prompts for _ in range(2)], targets, pad)
    mean = [float(token_lp.mean()) for _, token_lp, _ in scored]
    return [f for i, f in enumerate(facts) if mean[2 * i] > mean[2 * i + 1]]


def score_form(model, tokenizer, facts: list[dict], form: str) -> dict:
    """P(True)/P(False) for each fact's true and counterfactual statement in one form (all in batched
    passes): counts of the pairwise reading and of the absolute verdicts."""

    if not facts:
        return {"n": 0, "tp": 0, "tn": 0, "pairwise": 0}
    fields = probe_fields(form)
    probes = [
        Probe(
            "true_false",
            question(f"{f['prompt']} {f[k]}") + ("" if fields["chat"] else "\nAnswer:"),
            rule=k,
            max_new_tokens=1,
            **fields,
        )
        for f in facts
        for k in ("answer", "foil")
    ]
    anchor = Fact(subject=facts[0]["subject"], prompt=facts[0]["prompt"], target_new=facts[0]["foil"])
    found = measure(model, tokenizer, anchor, probes)  # True/False probes read no target of the fact
    pairs = list(zip(found[0::2], found[1::2]))
    return {
        "n": len(facts),
        "tp": sum(bool(t.verdict) for t, _ in pairs),
        "tn": sum(not f.verdict for _, f in pairs),
        "pairwise": sum(bool(prefers_statement(t, f)) for t, f in pairs),
    }


BUNDLED = PACKAGE_DATA / "factcheck_calibrations.json"


def calibrate(handle, form: str | None = None, split: str = "calibrate") -> Calibration:
    """The fact-check calibration of a loaded model (a :class:`~editlab.model.handle.ModelHandle`): computed
    once (two batched passes over the bundled statements: seconds for a small model), then read from
    the disk cache, keyed by the model's fingerprint, the form, the split, the bundled data and this
    procedure's version. The default model's is bundled (``data/factcheck_calibrations.json``, made by
    ``benchmarks/factcheck_forms.py`` and checked by the tests), so a first edit does not wait for it."""

    form = check_form(form or default_form(handle.tokenizer))
    digest = calibration_key(handle.fingerprint, form, split)
    f = paths.cache_dir("factcheck", handle.fingerprint) / f"{digest}.json"
    for source in (f, BUNDLED):
        try:
            d = json.loads(source.read_text())
            return Calibration.from_dict(d if source == f else d[digest])
        except FileNotFoundError:
            continue
        except (ValueError, TypeError, KeyError):
            if source == f:
                f.unlink(missing_ok=True)  # a damaged entry is recomputed, never trusted
    facts = statements(split)
    with handle.lock:  # at rest the shared model is unedited
        known = known_facts(handle.model, handle.tokenizer, facts)
        counts = score_form(handle.model, handle.tokenizer, known, form)
    cal = calibration_of(handle.name, form, split, len(facts), counts)
    paths.atomic_write_bytes(f, json.dumps(cal.to_dict()).encode())
    return cal


def calibration_key(fingerprint: str, form: str, split: str = "calibrate") -> str:
    """What determines a calibration: the model, the form, the split, the bundled statements, this
    procedure's version."""

    data = paths.key_digest(data=DATA.read_text(encoding="utf-8"))
    return paths.key_digest(model=fingerprint, form=form, split=split, data=data, version=VERSION)

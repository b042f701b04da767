"""``editlab probe`` and ``editlab edit``: one fact, side by side before and after."""

from __future__ import annotations

import dataclasses

from editlab import methods
from editlab.cli.common import (
    add_model_args,
    load,
    non_negative_float,
    positive_int,
    progress_printer,
    read_yaml_mapping,
    status,
)
from editlab.facts.fact import Fact, Neighbor
from editlab.measure.metrics import negated_measure, negated_text_names
from editlab.measure.probes import ProbeReport, negation_form
from editlab.session import EditSession


def register(sub) -> None:
    for name, helptext in (
        ("probe", "probe what the model says about a fact (no edit)"),
        ("edit", "edit one fact and compare unedited / before / after"),
    ):
        p = sub.add_parser(name, help=helptext)
        add_model_args(p)
        p.add_argument("--subject", required=True)
        p.add_argument("--prompt", required=True, help="a prompt containing the subject (or '{}' for it)")
        p.add_argument("--target-new", required=True)
        p.add_argument("--target-true", default=None)
        p.add_argument(
            "--negated-prompt",
            default=None,
            help="the prompt negated, your own (default: editlab.negate's; a prompt it cannot negate "
            "as English gets no negation probe)",
        )
        p.add_argument("--paraphrase", action="append", default=[], help="repeatable")
        p.add_argument("--neighbor", action="append", default=[], help="repeatable; 'prompt' or 'prompt=>answer'")
        p.add_argument("--generation-tokens", type=positive_int, default=40)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        if name == "edit":
            p.add_argument("--method", default="rome", help="one of: " + ", ".join(methods.available()))
            p.add_argument("--hparams", default=None, help="a YAML file of hyperparameters (EasyEdit keys accepted)")
            p.add_argument(
                "--set",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="override one hyperparameter (repeatable)",
            )
            p.add_argument(
                "--negation-weight",
                type=non_negative_float,
                default=None,
                metavar="W",
                help=f"editlab's negation-aware objective ({', '.join(methods.having('negation_objective'))}) "
                "with weight W (0 = the published method), the best form found out of sample "
                "(benchmarks/negation.py): the two-sided term in v* (the true target beats target-new "
                "after the negated prompt, target-new the true one after the prompt); "
                "--set negation_objective=push-down|contrast|predicate picks another form (predicate: "
                "ROME and MEMIT only, a second write at the 'not' token), --set negation_forms=not,never "
                "optimises more negation forms",
            )
            p.add_argument("--corpus", default=None, help="text corpus (.txt/.jsonl) for second-moment statistics")
            p.add_argument("--offline", action="store_true", help="never download a corpus")
            p.add_argument(
                "--sample-corpus",
                action="store_true",
                help="offline with no --corpus and no bundled statistics for the layers: sample the "
                "statistics corpus from the model itself (slow; the error without it says how slow)",
            )
            p.add_argument(
                "--negative-edit",
                action="store_true",
                help="write the negated statement instead ('... is not' -> target-new) and probe "
                "the original prompts (the NP/NN protocol)",
            )
        p.set_defaults(handler=run_probe if name == "probe" else run_edit)


def fact_from_args(args) -> Fact:
    neighbors = []
    for n in args.neighbor:
        prompt, _, answer = n.partition("=>")
        neighbors.append(Neighbor(prompt.strip(), answer.strip() or None))
    return Fact(
        subject=args.subject,
        prompt=args.prompt,
        target_new=args.target_new,
        target_true=args.target_true,
        paraphrases=tuple(args.paraphrase),
        neighbors=tuple(neighbors),
        negated_prompt=args.negated_prompt,
    )


def parse_sets(items: list[str]) -> dict:
    """``--set KEY=VALUE`` pairs as a mapping, each value read as bounded YAML; a key given twice is refused."""
    from editlab.core.bounded import load_yaml, short

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {short(item)}: expected KEY=VALUE")
        key = key.strip()
        if key in out:
            raise ValueError(f"--set {short(key)} is given twice; give each hyperparameter once")
        out[key] = load_yaml(value, f"--set {short(item, 60)}")
    return out


def hparams_from_args(args, handle):
    mod = methods.get(args.method)
    data = read_yaml_mapping(args.hparams) if args.hparams else {}
    data.update(parse_sets(args.set))
    if getattr(args, "negation_weight", None) is not None:
        if not mod.CAPABILITIES.negation_objective:
            raise ValueError(
                f"--negation-weight: {args.method} has no negation-aware objective; "
                f"use one of {', '.join(methods.having('negation_objective'))}"
            )
        data["negation_weight"] = args.negation_weight
    hp, report = mod.HParams.from_dict(data, handle)
    for line in report.lines():
        status(f"hparams: {line}")
    return hp


def run_probe(args) -> int:
    fact = fact_from_args(args)
    handle = load(args)
    session = EditSession(handle)
    report = session.compare(fact, session.probes_for(fact, generation_tokens=args.generation_tokens))
    emit(report, args.json)
    return 0


def run_edit(args) -> int:
    fact = fact_from_args(args)
    handle = load(args)
    hp = hparams_from_args(args, handle)
    session = EditSession(handle, corpus=args.corpus, online=not args.offline, sample_corpus=args.sample_corpus)
    written = None
    if args.negative_edit:
        negated, rule = fact.negated()
        if negated is None or rule.startswith("already-negated"):
            raise ValueError(
                f"--negative-edit: {fact.prompt!r} has no negation to write ({rule}); give one with --negated-prompt"
            )
        written = dataclasses.replace(fact, prompt=negated, negated_prompt=None)
        status(f"negative edit ({rule}): writing {negated!r} -> {fact.target_new!r}")
    status(f"editing with {args.method} ...")
    _, report = session.edit_and_compare(
        fact,
        args.method,
        hp,
        session.probes_for(fact, generation_tokens=args.generation_tokens),
        progress=progress_printer(),
        written=written,
    )
    emit(report, args.json)
    return 0


def emit(report: ProbeReport, as_json: bool) -> None:
    if as_json:
        print(report.to_json())
    else:
        print(render_table(report))


def _cell(m) -> str:
    if m is None:
        return "-"
    if m.p_yes is not None:
        return f"True {m.p_yes:.2f} / False {m.p_no:.2f} -> {'T' if m.verdict else 'F'}"
    mark = "*" if m.top1_is_new else ""
    s = f"new {m.p_new:.3f}{mark}"
    if m.p_true is not None:
        s += f" true {m.p_true:.3f}" + ("*" if m.top1_is_true else "")
    return s


JUDGED = {
    "new": "the new target",
    "answer": "another answer (the true target or another)",
    "neither": "no answer (a hedge or degenerate text)",
    None: "nothing",
}


def render_table(report: ProbeReport) -> str:
    """Plain-text side by side: one line per probe, a column per model state."""
    cols = [c for c in ("unedited", "before", "after") if any(getattr(r, c) for r in report.rows)]
    lines = [
        f"model: {report.model}   method: {report.method or '(none)'}"
        + (f"   edit: {report.edit_seconds:.1f}s" if report.edit_seconds else "")
    ]
    f = report.fact
    lines.append(f"fact: {f.prompt} -> {f.target_new!r} (true: {f.target_true!r})")
    for note in report.notes:
        lines.append(f"note: {note}")
    header = f"{'probe':<16} {'prompt':<52} " + " ".join(f"{c:<38}" for c in cols)
    lines += [header, "-" * len(header)]
    for r in report.rows:
        prompt = r.probe.prompt.replace("\n", " ")
        prompt = prompt if len(prompt) <= 50 else prompt[:47] + "..."
        lines.append(
            f"{_probe_kind(r.probe):<16} {prompt:<52} " + " ".join(f"{_cell(getattr(r, c)):<38}" for c in cols)
        )
    lines.append("")
    lines += _greedy_lines(report, cols)
    lines += _verdict_lines(report, cols[-1])
    return "\n".join(lines)


def _probe_kind(probe) -> str:
    """The probe's kind as the table's first column shows it (with its rule or form where it has one)."""
    kind = probe.kind + (f"[{probe.rule}]" if probe.kind == "true_false" else "")
    if probe.kind == "negation":
        kind = f"neg[{negation_form(probe) or probe.rule}]"
    if probe.kind == "ablation":  # the predicate variant, short enough for the column
        kind = "abl:" + {
            "original": "orig",
            "negated": "not",
            "affirmed": "affirm",
            "predicate-removed": "none",
        }.get(probe.rule, "?")
    return kind


def _greedy_lines(report: ProbeReport, cols: list[str]) -> list[str]:
    """The greedy continuations of the positive, negation and generation probes, per model state."""
    lines = ["greedy continuations (* = greedy text starts with that target):"]
    for r in report.rows:
        if r.probe.kind in ("positive", "negation", "generation"):
            for c in cols:
                m = getattr(r, c)
                if m is not None:
                    lines.append(f"  {r.probe.kind:<10} {c:<8} {r.probe.prompt!r} -> {m.greedy.strip()!r}")
    return lines


def _verdict_lines(report: ProbeReport, col: str) -> list[str]:
    """What the negated prompt's answer names, the fact-check calibration and the summary line of state ``col``."""
    lines = []
    s = report.summary(col)
    neg = negated_measure(report, col)
    if neg is not None:
        lines.append(f"  after the negated prompt the first clause names: {JUDGED[negated_text_names(report, neg)]}")
    lines.append("")
    if report.factcheck is not None:
        lines.append(f"fact-check calibration: {report.factcheck.sentence()}")
    fc = s["factcheck_disagrees_with_completion"]
    if fc is None:
        fc = (
            "not read (the probe is at chance on this model)"
            if not s["factcheck_readable"]
            else "not read (before the edit the probe did not read this fact)"
        )
    lines.append(
        f"[{col}] positive prefers new: {s['positive_prefers_new']}   "
        f"new target survives negation: "
        f"{s['new_target_survives_negation'] if s['negation_probed'] else 'not probed'}   "
        f"fact-check disagrees with completion: {fc}"
        + (
            f"   ignores the predicate (is / is not / neither): {s['ignores_predicate']}"
            if s.get('ignores_predicate') is not None
            else ""
        )
    )
    return lines

import dataclasses
import json

import pytest
import torch

from editlab import EditSession, Fact
from editlab.measure.probes import KINDS, Probe, default_probes, measure, negation_form, starts_with_target


@pytest.mark.parametrize(
    "text,target,expected",
    [
        (" English.\n", "English", True),
        ("English", "English", True),
        (" Englishman", "English", False),
        (" French", "English", False),
        (" New York City", "New York", True),
    ],
)
def test_starts_with_target_is_exact_and_word_bounded(text, target, expected):
    assert starts_with_target(text, target) is expected


def test_default_probes_cover_every_kind_and_are_visible(handle):
    fact = Fact(
        "Danielle Darrieux",
        "The mother tongue of Danielle Darrieux is",
        "English",
        "French",
        paraphrases=("Danielle Darrieux spoke the language",),
        neighbors=[("Michel Rocard is a native speaker of", "French")],
    )
    probes = default_probes(fact, handle.tokenizer)
    kinds = [p.kind for p in probes]
    assert set(KINDS) <= set(kinds)
    neg = next(p for p in probes if p.kind == "negation")
    assert neg.prompt == "The mother tongue of Danielle Darrieux is not"
    tf = [p for p in probes if p.kind == "true_false"]
    # Once asserting each target, through the chat template of the instruct model, after the
    # fact-check's demonstrations (the form adopted for a chat model: editlab.measure.factcheck).
    assert [p.rule for p in tf] == ["new", "true"] and all(p.chat for p in tf)
    assert all(len(p.demos) == 4 for p in tf)
    assert tf[0].prompt == "True or false: The mother tongue of Danielle Darrieux is English."


def test_one_negation_probe_per_form_the_prompt_can_be_negated_in(handle):
    fact = Fact("Toko Yasuda", "Toko Yasuda plays the", "guitar", "piano")
    neg = [(p.prompt, p.rule) for p in default_probes(fact, handle.tokenizer) if p.kind == "negation"]
    assert neg == [
        ("Toko Yasuda does not play the", "not: table"),
        ("Toko Yasuda doesn't play the", "contraction: table"),
        ("It is not true that Toko Yasuda plays the", "not_true: table"),
        ("Toko Yasuda never plays the", "never: table"),
    ]
    fragment = Fact("Toko Yasuda", "Toko Yasuda, the", "guitar", "piano")  # no contraction or "never" form
    forms = [negation_form(p) for p in default_probes(fragment, handle.tokenizer) if p.kind == "negation"]
    assert forms == ["not", "not_true"]


def test_a_prompt_that_cannot_be_negated_gets_no_negation_probe_and_a_given_one_is_used(handle):
    fact = Fact("Toko Yasuda", "Toko Yasuda's instrument:", "guitar", "piano")
    assert [p for p in default_probes(fact, handle.tokenizer) if p.kind == "negation"] == []  # never an appended "not"
    given = dataclasses.replace(fact, negated_prompt="{}'s instrument is not")
    neg = [(p.prompt, p.rule) for p in default_probes(given, handle.tokenizer) if p.kind == "negation"]
    assert neg == [("Toko Yasuda's instrument is not", "not: given")]


def test_demonstrations_are_rendered_before_the_question(handle):
    from editlab.measure.probes import render

    demos = (("True or false: Ice is frozen water.", "True"),)
    plain = Probe("true_false", "True or false: X.\nAnswer:", rule="new", demos=demos)
    text = handle.tokenizer.decode(render(handle.tokenizer, plain))
    assert "True or false: Ice is frozen water.\nAnswer: True\n\nTrue or false: X.\nAnswer:" in text
    chat = Probe("true_false", "True or false: X.", rule="new", chat=True, demos=demos)
    text = handle.tokenizer.decode(render(handle.tokenizer, chat))
    assert text.index("Ice is frozen water") < text.index("True or false: X.")
    assert "assistant\nTrue" in text


def test_measure_scores_targets_ranks_and_true_false(handle):
    fact = Fact("France", "The capital of France is", "Rome", "Paris")
    probes = [
        Probe("positive", fact.prompt),
        Probe("true_false", "True or false: The capital of France is Paris.", rule="true", chat=True),
        Probe("true_false", "True or false: The capital of France is Rome.", rule="new", chat=True),
    ]
    pos, tf_true, tf_new = measure(handle.model, handle.tokenizer, fact, probes)
    assert pos.p_true > 0.5 > pos.p_new, pos
    assert pos.rank_true == 1 and pos.rank_new > 1
    assert pos.top5[0][0].strip() == "Paris"
    assert pos.p_true == pytest.approx(pos.p_true_seq)  # one-token target: mean == sequence
    assert pos.greedy.lstrip().startswith("Paris") and pos.top1_is_true and not pos.top1_is_new
    for m in (tf_true, tf_new):
        assert m.p_new is None and m.p_true is None  # not meaningful for a True/False question
        assert 0 < m.p_yes < 1 and 0 < m.p_no < 1
        assert m.verdict == (m.p_yes > m.p_no)


def test_batched_measure_equals_one_by_one(handle):
    fact = Fact(
        "Danielle Darrieux",
        "The mother tongue of Danielle Darrieux is",
        "English",
        "French",
        paraphrases=("Where Danielle Darrieux is from, people speak the language of",),
    )
    probes = [p for p in default_probes(fact, handle.tokenizer, generation_tokens=6)]
    together = measure(handle.model, handle.tokenizer, fact, probes)
    for p, m in zip(probes, together):
        [alone] = measure(handle.model, handle.tokenizer, fact, [p])
        assert alone.greedy == m.greedy
        for field in ("p_new", "p_true", "p_yes"):
            a, b = getattr(alone, field), getattr(m, field)
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-4, abs=1e-7), (p.kind, field)


def test_report_has_three_columns_and_exports(handle):
    fact = Fact("Danielle Darrieux", "The mother tongue of {} is", "English", "French")
    report = EditSession(handle).compare(fact)
    assert {r.probe.kind for r in report.rows} >= {"positive", "negation", "true_false", "generation"}
    d = json.loads(report.to_json())
    assert d["probes"][0]["unedited"]["p_new"] is not None
    df = report.to_dataframe()
    assert set(df["column"]) == {"unedited", "after"}  # no edit yet: current state is the unedited one
    assert {"p_new", "p_true", "greedy", "top1_is_new", "rank_new"} <= set(df.columns)


def test_probe_prompts_can_be_overridden(handle):
    fact = Fact("France", "The capital of France is", "Rome", "Paris")
    mine = [Probe("negation", "The capital of France is definitely not", rule="mine")]
    report = EditSession(handle).compare(fact, mine)
    assert [r.probe.prompt for r in report.rows] == ["The capital of France is definitely not"]


def test_scoring_unembeds_only_the_scored_positions(handle, monkeypatch):
    """Probe memory is bounded by the target, not the prompt: a long prompt gets logits for the
    last len(target) + 1 positions only (no full-vocabulary row per prompt position)."""
    from editlab.model.tokens import score_continuations, target_ids

    shapes = []
    hook = handle.model.lm_head.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    try:
        prompt = handle.tokenizer("word " * 400).input_ids
        target = target_ids(handle.tokenizer, "Paris France")
        [(nxt, token_lp, pred)] = score_continuations(handle.model, [prompt], [target], handle.tokenizer.pad_token_id)
    finally:
        hook.remove()
    assert shapes == [(1, len(target) + 1, handle.model.config.vocab_size)]
    assert nxt.shape == (handle.model.config.vocab_size,) and token_lp.shape == (len(target),)
    assert torch.all(token_lp <= 0) and pred.shape == (len(target),)


def test_multi_token_targets_score_as_teacher_forced_sequences(handle):
    """A target of several tokens: P per token (geometric mean) and the whole sequence, from a
    teacher-forced pass; equal to scoring the full text by hand."""
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "Old Church Slavonic", "French")
    [m] = measure(handle.model, handle.tokenizer, fact, [Probe("positive", fact.prompt, max_new_tokens=2)])
    from editlab.model.tokens import target_ids

    ids = handle.tokenizer(fact.prompt).input_ids
    t = target_ids(handle.tokenizer, fact.target_new)
    assert len(t) > 1
    with torch.no_grad():
        lp = torch.log_softmax(handle.model(torch.tensor([ids + t])).logits[0].float(), -1)
    by_hand = torch.stack([lp[len(ids) - 1 + j, tok] for j, tok in enumerate(t)])
    assert m.p_new == pytest.approx(float(by_hand.mean().exp()), rel=1e-3)
    assert m.p_new_seq == pytest.approx(float(by_hand.sum().exp()), rel=1e-3)


def test_a_prompt_at_the_cap_keeps_probe_memory_bounded(handle):
    """The memory bound: with a prompt as long as the operator allows, no probe pass makes a
    logits tensor larger than (prompts in a batch) × (longest target + 1) × vocabulary — ≈ 25 MB
    for SmolLM2 at 16 prompts and 8-token targets — where a full row per prompt position took GBs."""
    from editlab.core.limits import current

    cap = current().max_prompt_chars
    prompt = ("The mother tongue of Danielle Darrieux is " + "very " * cap)[: cap - len(" clearly")] + " clearly"
    assert len(prompt) <= cap
    fact = Fact("Danielle Darrieux", prompt, "English", "French")
    sizes = []
    hook = handle.model.lm_head.register_forward_hook(lambda m, i, o: sizes.append(o.numel()))
    try:
        measure(
            handle.model,
            handle.tokenizer,
            fact,
            [Probe("positive", prompt, max_new_tokens=2), Probe("negation", prompt + " not", max_new_tokens=2)],
        )
    finally:
        hook.remove()
    vocab = handle.model.config.vocab_size
    assert sizes and max(sizes) <= 16 * (8 + 1) * vocab
    assert max(sizes) * 4 < 32 * 2**20  # bytes of the largest logits tensor: under 32 MiB


def test_guessed_generation_equals_plain_greedy_whatever_the_guess(handle):
    """greedy_drafted returns what greedy_with_first returns, with a right, a wrong, a partly right,
    an over-long and an empty guess; the right guess needs a single pass."""
    from editlab.model.tokens import greedy_drafted, greedy_with_first

    tok, model = handle.tokenizer, handle.model
    prompts = [
        tok("The capital of France is").input_ids,
        tok("The mother tongue of Danielle Darrieux is").input_ids,
        tok("Michel Rocard is a native speaker of").input_ids,
        tok("Paris is a city in").input_ids,
    ]
    plain = greedy_with_first(model, tok, prompts, 12)
    truth = [ids for ids, _ in plain]
    wrong = tok(" the the the the the the the the the the the the", add_special_tokens=False).input_ids
    guesses = {
        "right": truth,
        "wrong": [wrong] * 4,
        "partly": [t[:5] + wrong[:7] for t in truth],
        "shifted": [t[:3] + t[4:] for t in truth],  # one token missing: the guess re-aligns
        "empty": [[]] * 4,
    }
    calls = []
    real_forward = model.forward

    def counting(*a, **kw):
        calls.append(1)
        return real_forward(*a, **kw)

    for name, guess in guesses.items():
        calls.clear()
        model.forward = counting
        try:
            got = greedy_drafted(model, tok, prompts, [12] * 4, guess)
        finally:
            del model.forward
        assert [ids for ids, _ in got] == truth, name
        for (_, a), (_, b) in zip(got, plain):
            assert torch.allclose(a, b, atol=1e-4), name
        if name == "right":
            assert len(calls) == 1  # every row checked in one batched pass


def test_a_guess_changes_no_measure(handle):
    fact = Fact(
        "Danielle Darrieux",
        "The mother tongue of Danielle Darrieux is",
        "English",
        "French",
        paraphrases=("Where Danielle Darrieux is from, people speak the language of",),
        neighbors=[("Michel Rocard is a native speaker of", "French")],
    )
    probes = default_probes(fact, handle.tokenizer, generation_tokens=12)
    plain = measure(handle.model, handle.tokenizer, fact, probes)
    stale = [dataclasses.replace(m, greedy=" Spanish, and she was born in") for m in plain]
    for drafts in (plain, stale):
        guessed = measure(handle.model, handle.tokenizer, fact, probes, drafts=drafts)
        for p, a, b in zip(probes, plain, guessed):
            assert a.greedy == b.greedy, p.kind
            assert a.top5[0][0] == b.top5[0][0]
            for field in ("p_new", "p_true", "p_yes", "p_answer"):
                x, y = getattr(a, field), getattr(b, field)
                assert (x is None and y is None) or x == pytest.approx(y, rel=1e-4, abs=1e-7), (p.kind, field)


def test_a_report_is_built_and_read_back_in_one_place():
    from editlab.measure.probes import Measure, ProbeReport

    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    probes = [Probe("positive", fact.prompt), Probe("generation", fact.prompt, max_new_tokens=40)]
    m = Measure(" French", ((" French", 0.6),), p_new=0.01, p_true=0.6)
    report = ProbeReport.of(fact, probes, unedited=[m, m], after=[m, None], model="x", method="rome", notes=["n"])
    assert [r.before for r in report.rows] == [None, None] and report.rows[1].after is None
    back = ProbeReport.from_dict(json.loads(report.to_json()))
    assert back == report and back.rows[1].probe.max_new_tokens == 40
    with pytest.raises(ValueError, match="1 after measures for 2 probes"):
        ProbeReport.of(fact, probes, after=[m])

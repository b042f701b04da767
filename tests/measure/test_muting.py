"""The muting detector scores known strings as worked out by hand, and tells a muted model apart."""

from __future__ import annotations

import math

import pytest

from editlab.measure.muting import MutingProbe, is_empty, ngram_entropy, repeated_token_rate, repeats, score_outputs
from editlab.model.nethook import Trace


def test_empty_means_nothing_but_whitespace_or_special_tokens():
    assert is_empty("") and is_empty("  \n\t")
    assert is_empty("<|im_end|>", special=["<|im_end|>"])
    assert is_empty(" <|im_end|><|endoftext|> ", special=["<|im_end|>", "<|endoftext|>"])
    assert not is_empty("<|im_end|>")  # not special here: it is text
    assert not is_empty(" .")


def test_repeated_tokens_are_counted_against_earlier_tokens_of_the_same_output():
    assert repeats(["a", "b", "a", "c", "a"]) == 2
    assert repeated_token_rate([["a", "b", "a", "c", "a"]]) == pytest.approx(2 / 5)
    # pooled over outputs, not averaged: 1 repeat in 4 tokens
    assert repeated_token_rate([["a", "a"], ["b", "c"]]) == pytest.approx(1 / 4)
    # a token repeated in another output is not a repeat
    assert repeated_token_rate([["a"], ["a"]]) == 0.0
    assert repeated_token_rate([[], []]) is None


def test_ngram_entropy_matches_hand_worked_values():
    # "a b a b": bigrams ab, ba, ab -> H2 = -(2/3 log2 2/3 + 1/3 log2 1/3) = 0.918296;
    # trigrams aba, bab -> H3 = 1; ROME weights: (2/3 * H2 + 4/3 * H3) / 2
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert ngram_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert ngram_entropy("a b a b") == pytest.approx(0.972765, abs=1e-6)
    # four distinct words: H2 = log2 3, H3 = 1
    assert ngram_entropy("a b c d") == pytest.approx((2 / 3 * math.log2(3) + 4 / 3) / 2)
    # a loop carries no information, and neither does silence
    assert ngram_entropy("the the the the the") == 0.0
    assert ngram_entropy("") == 0.0
    # punctuation counts as a word: "hi , hi" == "hi, hi"
    assert ngram_entropy("hi, hi") == ngram_entropy("hi , hi")


def test_score_outputs_hand_worked():
    special = ["<|im_end|>"]
    r = score_outputs(["p1", "p2", "p3", "p4"], ["", "a b a b", "<|im_end|>", "x y"], special=special)
    assert r.empty_rate == 0.5
    assert r.repeat_rate == pytest.approx(2 / 6)  # tokens: -, abab (2 repeats), -, xy
    # entropies: 0, 0.972765, 0, and "x y" (one bigram, no trigram) = 0
    assert r.ngram_entropy == pytest.approx(0.972765 / 4, abs=1e-6)
    assert r.mean_tokens == 1.5
    assert [s.text for s in r.samples] == ["", "a b a b", "<|im_end|>", "x y"]
    with pytest.raises(ValueError):
        score_outputs(["p"], [])


@pytest.mark.slow
def test_unedited_model_speaks_and_a_model_forced_to_eos_is_muted(handle):
    probe = MutingProbe(max_new_tokens=12)
    with handle.lock:
        normal = probe.measure(handle.model, handle.tokenizer)
        eos = handle.tokenizer.eos_token_id

        def force_eos(logits, name):
            logits[..., eos] = logits.max() + 100.0
            return logits

        with Trace(handle.model, handle.arch.unembed, retain_output=False, edit_output=force_eos):
            muted = probe.measure(handle.model, handle.tokenizer)
    assert normal.empty_rate == 0.0
    assert normal.ngram_entropy > 1.0 and normal.mean_tokens > 8
    assert len(normal.samples) == len(probe.completions) + len(probe.questions)
    assert muted.empty_rate == 1.0 and muted.ngram_entropy == 0.0 and muted.repeat_rate is None


def test_a_prompt_edits_context_goes_before_every_probe_as_the_probes_put_it(handle):
    from editlab.measure.muting import MutingProbe

    tok = handle.tokenizer
    probe = MutingProbe(completions=("Water boils at",), questions=("Name three colours.",))
    context = "New fact: Water boils at 50 degrees\n"
    (_, plain, _), (_, chat, _) = probe.render(tok, context)
    assert plain == tok(context + "Water boils at").input_ids
    assert chat == list(
        tok.apply_chat_template(
            [{"role": "user", "content": context + "Name three colours."}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
    )

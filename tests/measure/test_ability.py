"""General-ability scoring: hand-worked items through lm-eval's real scoring path, with a scripted LM
whose every answer we choose, so right answers must score 1, wrong 0, and aliases count."""

from __future__ import annotations

import csv
import json
import math
import re
import threading

import pytest

from editlab.core.errors import Cancelled
from editlab.measure.ability import TASKS, AbilityConfig, AbilitySuite, corpus_paragraphs
from tests.conftest import SHARED, WIKITEXT, need_shared

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.model import LM  # noqa: E402

MARK = re.compile(r"\[item-(\d+)\]")


class ScriptedLM(LM):
    """Answers the *last* item marker in the context (the scored item; few-shot examples precede it).

    ``choice[k]``: the continuation it prefers for item k; ``gen[k]``: the text it generates."""

    def __init__(self, choice=None, gen=None):
        super().__init__()
        self.choice, self.gen = choice or {}, gen or {}

    @staticmethod
    def _item(ctx):
        return int(MARK.findall(ctx)[-1])

    def loglikelihood(self, requests, disable_tqdm=False):
        return [
            (0.0 if cont.strip() == self.choice[self._item(ctx)] else -5.0, True)
            for ctx, cont in (r.args for r in requests)
        ]

    def generate_until(self, requests, disable_tqdm=False):
        return [self.gen[self._item(r.args[0])] for r in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        # a text of n words made of "alpha" costs ln 10 per word, of "beta" ln 100 per word
        out = []
        for (text,) in (r.args for r in requests):
            out.append(-sum(math.log(10) if w == "alpha" else math.log(100) for w in text.split()))
        return out


def _write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "bench"
    # MMLU: 5 dev rows (the shots) and 2 test rows of one subject
    _write_csv(
        d / "mmlu" / "dev" / "astronomy_dev.csv",
        [[f"Shot question {i}?", "w", "x", "y", "z", "ABCDA"[i]] for i in range(5)],
    )
    _write_csv(
        d / "mmlu" / "test" / "astronomy_test.csv",
        [
            ["[item-0] Which planet is red?", "Venus", "Mars", "Earth", "Jupiter", "B"],
            ["[item-1] Which planet is largest?", "Venus", "Mars", "Earth", "Jupiter", "D"],
        ],
    )
    # GSM8K: 8 problems; 3 are scored, the first 5 of the others are the shots
    _jsonl(
        d / "gsm8k-test.jsonl",
        [
            {"question": f"[item-{i}] How many?", "answer": f"Work.\n#### {a}"}
            for i, a in enumerate(["18", "1,234", "7", "3", "5", "6", "8", "9"])
        ],
    )
    _jsonl(
        d / "csqa-200.jsonl",
        [
            {
                "answerKey": k,
                "id": str(i),
                "question": {
                    "stem": f"[item-{i}] Where?",
                    "choices": [{"label": lab, "text": f"place {lab}"} for lab in "ABCDE"],
                },
            }
            for i, k in enumerate("CE")
        ],
    )
    _jsonl(
        d / "triviaqa-test-1000.jsonl",
        [
            {
                "id": "0",
                "question": '"[item-0] Who wrote ""Tom Sawyer""?"',
                "golden_answers": ["Mark Twain", "Sam Clemens"],
            },
            {"id": "1", "question": "[item-1] Who wrote Tom Sawyer?", "golden_answers": ["Mark Twain", "Sam Clemens"]},
            {"id": "2", "question": "[item-2] Who wrote Tom Sawyer", "golden_answers": ["Mark Twain", "Sam Clemens"]},
        ],
    )
    with open(d / "truthfulqa.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
        w.writerow(
            [
                "A",
                "M",
                "[item-0] What happens if you eat seeds?",
                "They pass through",
                "x",
                "You grow watermelons; You die",
                "s",
            ]
        )
        w.writerow(
            ["A", "M", "[item-1] Where did fortune cookies originate?", "It is unclear", "x", "China; Japan", "s"]
        )
    (d / "bbh").mkdir()
    (d / "bbh" / "logic.json").write_text(
        json.dumps(
            {
                "examples": [
                    {"input": f"[item-{i}] Pick one.\nOptions:\n(A) a\n(B) b", "target": t}
                    for i, t in enumerate(["(A)", "(B)", "(A)", "(B)", "(A)"])
                ]
            }
        )
    )
    corpus = tmp_path / "corpus.jsonl"
    _jsonl(corpus, [{"text": " ".join(["alpha"] * 50)}, {"text": " ".join(["beta"] * 50)}])
    return d, corpus


def test_hand_worked_items_score_right_1_wrong_0(data_dir):
    d, corpus = data_dir
    config = AbilityConfig(
        sizes={"mmlu": 2, "gsm8k": 3, "csqa": 2, "triviaqa": 3, "truthfulqa": 2, "bbh": 2, "perplexity": 2},
        data_dir=str(d),
        sources={"perplexity": str(corpus)},
        online=False,
    )
    AbilitySuite(config)  # every task prepares from the files
    gsm_out = {0: "9 + 9 = 18.", 1: "So she pays $1,234.", 2: "It is 6.", 3: "#### 3", 4: "4", 5: "6", 6: "8", 7: "9"}
    gsm_expected = {0: 1.0, 1: 1.0, 2: 0.0, 3: 1.0, 4: 0.0, 5: 1.0, 6: 1.0, 7: 1.0}
    lms = {
        "mmlu": ScriptedLM(choice={0: "B", 1: "A"}),  # right, wrong
        "gsm8k": ScriptedLM(gen=gsm_out),
        "csqa": ScriptedLM(choice={0: "C", 1: "A"}),
        # an alias that is not the first, case and punctuation ignored; a partial name is wrong
        "triviaqa": ScriptedLM(gen={0: " Sam Clemens", 1: "mark twain.", 2: "Twain"}),
        "truthfulqa": ScriptedLM(choice={0: "They pass through", 1: "China"}),
        "bbh": ScriptedLM(gen={0: " (A)", 1: "(A)", 2: "(A)", 3: "(A)", 4: "(A)"}),
        "perplexity": ScriptedLM(),
    }
    results = {}
    for task, lm in lms.items():
        one = AbilitySuite(AbilityConfig(**{**config.__dict__, "sizes": {task: config.sizes[task]}}))
        results[task] = one.evaluate_lm(lm).tasks[task]
    assert [i["score"] for i in results["mmlu"].items] == [1.0, 0.0] and results["mmlu"].score == 0.5
    assert [i["score"] for i in results["csqa"].items] == [1.0, 0.0] and results["csqa"].score == 0.5
    assert [i["score"] for i in results["triviaqa"].items] == [1.0, 1.0, 0.0]
    assert results["triviaqa"].score == pytest.approx(2 / 3)
    assert [i["score"] for i in results["truthfulqa"].items] == [1.0, 0.0]
    bbh = {int(MARK.search(i["input"]).group(1)): i["score"] for i in results["bbh"].items}
    assert all(v == (1.0 if k % 2 == 0 else 0.0) for k, v in bbh.items()) and len(bbh) == 2
    gsm = {int(MARK.search(i["input"]).group(1)): i["score"] for i in results["gsm8k"].items}
    assert len(gsm) == 3 and gsm == {k: gsm_expected[k] for k in gsm}
    assert results["gsm8k"].score == pytest.approx(sum(gsm.values()) / 3)
    # 50 words at ln 10 each and 50 at ln 100: exp((50 ln 10 + 50 ln 100) / 100) = 10 ** 1.5
    assert results["perplexity"].score == pytest.approx(10**1.5)
    assert sorted(i["score"] for i in results["perplexity"].items) == pytest.approx([10.0, 100.0])  # per paragraph
    assert results["perplexity"].higher_is_better is False


def test_prompts_follow_the_harness_formats(data_dir):
    d, corpus = data_dir
    suite = AbilitySuite(
        AbilityConfig(sizes={"mmlu": 1, "gsm8k": 3, "bbh": 2, "triviaqa": 3, "csqa": 1}, data_dir=str(d), online=False)
    )
    mmlu = suite.items["mmlu"][0]["prompt"]
    assert mmlu.startswith("The following are multiple choice questions (with answers) about astronomy.\n\n")
    assert mmlu.count("Shot question") == 5 and mmlu.count("\nAnswer: ") == 5 and mmlu.endswith("D. Jupiter\nAnswer:")
    scored = {q["question"] for q in suite.items["gsm8k"]}
    assert len(suite.shots["gsm8k"]) == 5 and not scored & {s["question"] for s in suite.shots["gsm8k"]}
    for item in suite.items["bbh"]:  # 3 shots from the same task, never an item being scored
        assert item["prompt"].count("Q: ") == 4
        for other in suite.items["bbh"]:
            assert item["prompt"].count(other["input"]) == (1 if other is item else 0)
    assert suite.items["triviaqa"][0]["question"] == '[item-0] Who wrote "Tom Sawyer"?'
    assert suite.items["triviaqa"][2]["question"] == "[item-2] Who wrote Tom Sawyer?"
    assert suite.items["csqa"][0]["prompt"].startswith("Question: [item-")
    assert suite.items["csqa"][0]["prompt"].endswith("E. place E\nAnswer:")


def test_cancel_stops_scoring(data_dir):
    d, _ = data_dir
    suite = AbilitySuite(AbilityConfig(sizes={"mmlu": 2}, data_dir=str(d), online=False))
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        suite.evaluate_lm(ScriptedLM(choice={0: "B", 1: "D"}), cancel=ev)


def test_missing_data_offline_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="gsm8k: no data given"):
        AbilitySuite(AbilityConfig(sizes={"gsm8k": 2}, data_dir=str(tmp_path), online=False))
    with pytest.raises(ValueError, match="unknown ability task"):
        AbilityConfig(sizes={"hellaswag": 3})


def test_shared_benchmarks_give_fixed_seeded_subsets():
    bench = need_shared(SHARED / "bench")
    cfg = AbilityConfig(data_dir=str(bench), sources={"perplexity": str(need_shared(WIKITEXT))}, online=False)
    a, b = AbilitySuite(cfg), AbilitySuite(cfg)
    assert set(a.items) == set(TASKS)
    for t in TASKS:
        assert len(a.items[t]) == cfg.sizes[t]
        assert a.items[t] == b.items[t]  # same seed, same items
    c = AbilitySuite(AbilityConfig(**{**cfg.__dict__, "seed": 1}))
    assert c.items["mmlu"] != a.items["mmlu"]
    assert all(p["prompt"].count("\nAnswer: ") == 5 for p in a.items["mmlu"])
    assert all(len(t["choices"]) >= 2 and t["answer"] == 0 for t in a.items["truthfulqa"])
    assert all('""' not in q["question"] for q in a.items["triviaqa"])  # CSV quoting undone
    assert all(200 <= len(p["text"]) <= cfg.ppl_chars and not p["text"].startswith("=") for p in a.items["perplexity"])


def test_corpus_paragraphs_skip_headings_and_fragments():
    text = " = Title = \n \n" + "word " * 60 + "\n \n = = Section = = \n \n short line \n \n" + "more " * 60 + "\n"
    paras = corpus_paragraphs(text)
    assert len(paras) == 2 and all(p.startswith(("word", "more")) for p in paras)

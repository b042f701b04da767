"""General ability: small, fixed, seeded subsets of standard benchmarks, scored by lm-evaluation-harness.

Seven scores, each measured on the unedited model first so a sweep can show what the edits cost:

=============  ===========================================================  ================
task           protocol (as lm-evaluation-harness's own task configs)        score
=============  ===========================================================  ================
mmlu           5-shot from the subject's dev rows, letter scoring            acc
gsm8k          5-shot chain of thought, greedy, last number in the answer    exact match
csqa           CommonsenseQA, zero-shot, letter scoring A-E                  acc
triviaqa       zero-shot, greedy, exact match over all aliases               exact match
truthfulqa     MC1 by likelihood, the 6-shot QA primer                       acc
bbh            BIG-Bench Hard, 3-shot answer-only, greedy                    exact match
perplexity     rolling log-likelihood over corpus paragraphs                 word perplexity
=============  ===========================================================  ================

lm-evaluation-harness (``lm_eval``) does all the scoring: the live, possibly edited model goes in
through ``HFLM(pretrained=<model object>)`` and every task is an lm-eval task config whose
``custom_dataset`` serves our seeded subset. editlab only chooses the items and builds the few-shot
prefixes where the item's own group decides them (MMLU's subject, BBH's task), because lm-eval's
samplers draw few-shot examples per task, not per row. See docs/ability.md.

Data: ``AbilityConfig.sources[task]`` (a file or folder in the public release's format), else
``data_dir`` laid out like the public releases (``mmlu/{dev,test}/*.csv``, ``gsm8k-test.jsonl``,
``csqa-200.jsonl``, ``triviaqa-test-1000.jsonl``, ``truthfulqa.csv``, ``bbh/*.json``; the corpus
for perplexity is ``sources["perplexity"]``), else the public source online (the Hugging Face
datasets lm-eval itself uses; WikiText-2 for perplexity).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from editlab.core.errors import Cancelled
from editlab.model import corpora

TRUTHFULQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)
PREP_VERSION = 1  # bump when item preparation changes (it is part of every run's config)


@dataclass(frozen=True)
class AbilityConfig:
    """Which items are scored and how. ``sizes[task] = 0`` leaves a task out."""

    sizes: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    seed: int = 0
    data_dir: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    online: bool = True
    batch_size: int = 8
    mmlu_shots: int = 5
    gsm8k_shots: int = 5
    bbh_shots: int = 3
    max_gen_tokens: Mapping[str, int] = field(default_factory=lambda: {"gsm8k": 192, "triviaqa": 24, "bbh": 48})
    ppl_chars: int = 1200

    def __post_init__(self):
        from editlab.core.bounded import short, whole

        for name in ("sizes", "max_gen_tokens", "sources"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"ability setting {name}: expected a mapping, got {short(getattr(self, name))}")
        unknown = set(map(str, self.sizes)) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown ability task(s) {short(sorted(unknown))}; known: {', '.join(TASKS)}")
        object.__setattr__(
            self, "sizes", {t: whole(n, f"ability subset size for {t}", lo=0) for t, n in self.sizes.items()}
        )
        object.__setattr__(
            self,
            "max_gen_tokens",
            {t: whole(n, f"ability max_gen_tokens for {short(t)}") for t, n in self.max_gen_tokens.items()},
        )
        object.__setattr__(self, "seed", whole(self.seed, "ability seed", lo=0))
        for name, lo in (("batch_size", 1), ("mmlu_shots", 0), ("gsm8k_shots", 0), ("bbh_shots", 0), ("ppl_chars", 1)):
            object.__setattr__(self, name, whole(getattr(self, name), f"ability setting {name}", lo=lo))

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t in TASKS if int(self.sizes.get(t, 0)) > 0)

    def to_dict(self) -> dict:
        return {
            "sizes": {t: int(self.sizes.get(t, 0)) for t in TASKS},
            "seed": self.seed,
            "data_dir": self.data_dir,
            "sources": dict(self.sources),
            "batch_size": self.batch_size,
            "mmlu_shots": self.mmlu_shots,
            "gsm8k_shots": self.gsm8k_shots,
            "bbh_shots": self.bbh_shots,
            "max_gen_tokens": dict(self.max_gen_tokens),
            "ppl_chars": self.ppl_chars,
            "prep": PREP_VERSION,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AbilityConfig:
        """From a mapping of field names (e.g. a YAML file); unknown keys are an error."""
        from editlab.core.bounded import check_tree, short

        check_tree(d, "ability settings")
        if not isinstance(d, Mapping):
            raise ValueError(f"ability settings: expected a mapping of settings, got {type(d).__name__} {short(d)}")
        names = {f.name for f in fields(cls)}
        unknown = set(map(str, d)) - names - {"prep"}
        if unknown:
            raise ValueError(f"unknown ability setting(s) {short(sorted(unknown))}; known: {', '.join(sorted(names))}")
        kw = {k: v for k, v in d.items() if k in names}
        if "sizes" in kw:
            kw["sizes"] = {t: int(kw["sizes"].get(t, 0)) for t in TASKS} | {
                t: n for t, n in kw["sizes"].items() if t not in TASKS
            }
        return cls(**kw)

    @classmethod
    def scaled(cls, n: int, **kw) -> AbilityConfig:
        """Every task at ``n`` items (GSM8K and perplexity at about a quarter / half: they cost more)."""
        sizes = {t: n for t in TASKS}
        sizes["gsm8k"] = max(1, n // 4)
        sizes["perplexity"] = max(1, n // 2)
        return cls(sizes=sizes, **kw)


@dataclass(frozen=True)
class TaskScore:
    task: str
    score: float | None
    metric: str
    higher_is_better: bool
    n: int
    metrics: Mapping[str, Any]
    seconds: float
    items: tuple[dict, ...] = ()  # per item: input (short), output, target, score


@dataclass(frozen=True)
class AbilityResult:
    tasks: Mapping[str, TaskScore]

    def scores(self) -> dict[str, float | None]:
        return {t: s.score for t, s in self.tasks.items()}

    def samples(self, k: int = 3) -> dict[str, list[dict]]:
        return {t: list(s.items[:k]) for t, s in self.tasks.items()}

    def seconds(self) -> dict[str, float]:
        return {t: s.seconds for t, s in self.tasks.items()}


# ---- items ----------------------------------------------------------------------------------------
def _subset(n_total: int, n: int, seed: int, what: str) -> list[int]:
    if n_total == 0:
        raise ValueError(f"{what}: no items")
    return sorted(random.Random(seed).sample(range(n_total), min(n, n_total)))


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {i} is not JSON ({e})") from e
    return out


def _choices_text(question: str, choices: Sequence[str], letters: str) -> str:
    lines = [question.strip()] + [f"{letters[i]}. {c}" for i, c in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer:"


def _unquote(q: str) -> str:
    """Undo CSV quoting left in some TriviaQA exports: '"Who wrote ""X""?"' -> 'Who wrote "X"?'."""
    q = q.strip()
    if len(q) > 1 and q[0] == q[-1] == '"' and '""' in q:
        q = q[1:-1].replace('""', '"')
    return q


def _mmlu_rows_from_folder(folder: Path) -> tuple[list[dict], dict[str, list[dict]]]:
    def read(split):
        out: dict[str, list[dict]] = {}
        files = sorted((folder / split).glob(f"*_{split}.csv"))
        if not files:
            raise FileNotFoundError(f"MMLU: no {split}/*_{split}.csv files under {folder}")
        for f in files:
            subject = f.name[: -len(f"_{split}.csv")]
            with open(f, encoding="utf-8", newline="") as fh:
                for i, r in enumerate(csv.reader(fh), 1):
                    if len(r) != 6 or r[5].strip() not in ("A", "B", "C", "D"):
                        raise ValueError(f"{f}: row {i}: expected question, A, B, C, D, answer letter")
                    out.setdefault(subject, []).append(
                        {"subject": subject, "question": r[0], "choices": r[1:5], "answer": "ABCD".index(r[5].strip())}
                    )
        return out

    test = read("test")
    return [r for s in sorted(test) for r in test[s]], read("dev")


def _mmlu_rows_online() -> tuple[list[dict], dict[str, list[dict]]]:
    ds = _hf("cais/mmlu", "all")
    dev: dict[str, list[dict]] = {}
    for r in ds["dev"]:
        dev.setdefault(r["subject"], []).append(dict(r))
    test = sorted((dict(r) for r in ds["test"]), key=lambda r: r["subject"])  # stable within a subject
    return test, dev


def prepare_mmlu(rows: list[dict], dev: Mapping[str, list[dict]], n: int, seed: int, shots: int) -> list[dict]:
    """Seeded items, each with lm-eval's MMLU 5-shot prefix from its own subject's dev rows."""
    out = []
    for i in _subset(len(rows), n, seed, "MMLU"):
        r = rows[i]
        subject = r["subject"]
        prefix = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        for s in list(dev.get(subject, []))[:shots]:
            prefix += _choices_text(s["question"], s["choices"], "ABCD") + " " + "ABCD"[int(s["answer"])] + "\n\n"
        out.append(
            {
                "subject": subject,
                "prompt": prefix + _choices_text(r["question"], r["choices"], "ABCD"),
                "answer": int(r["answer"]),
                "question": r["question"],
            }
        )
    return out


def _gsm8k_target(answer: str) -> str:
    return answer.split("####")[-1].strip().replace(",", "")


def prepare_gsm8k(rows: list[dict], n: int, seed: int, shots: int) -> tuple[list[dict], list[dict]]:
    """Seeded test items; the few-shot examples are the first items *not* in the subset."""
    idx = _subset(len(rows), n, seed, "GSM8K")
    chosen = set(idx)
    items = [
        {"question": rows[i]["question"], "answer": rows[i]["answer"], "target": _gsm8k_target(rows[i]["answer"])}
        for i in idx
    ]
    shot_rows = [
        {"question": r["question"], "answer": r["answer"], "target": _gsm8k_target(r["answer"])}
        for i, r in enumerate(rows)
        if i not in chosen
    ][:shots]
    return items, shot_rows


def _csqa_row(r: dict) -> dict:
    q = r["question"]
    if isinstance(q, dict):  # the original release: question.stem, question.choices
        stem, choices = q["stem"], sorted(q["choices"], key=lambda c: c["label"])
        labels, texts = [c["label"] for c in choices], [c["text"] for c in choices]
    else:  # Hugging Face tau/commonsense_qa: question, choices.label, choices.text
        stem, labels, texts = q, list(r["choices"]["label"]), list(r["choices"]["text"])
    if labels != list("ABCDE"[: len(labels)]) or r["answerKey"] not in labels:
        raise ValueError(f"CommonsenseQA item {r.get('id')}: choices must be labelled A.. and hold the answer key")
    return {"question": stem, "choices": texts, "answer": labels.index(r["answerKey"])}


def prepare_csqa(rows: list[dict], n: int, seed: int) -> list[dict]:
    out = []
    for i in _subset(len(rows), n, seed, "CommonsenseQA"):
        r = _csqa_row(rows[i])
        if len(r["choices"]) != 5:
            raise ValueError("CommonsenseQA items have five choices")
        out.append({**r, "prompt": "Question: " + _choices_text(r["question"], r["choices"], "ABCDE")})
    return out


def _triviaqa_row(r: dict) -> dict:
    if "golden_answers" in r:
        aliases = list(r["golden_answers"])
    elif isinstance(r.get("answer"), dict):  # Hugging Face mandarjoshi/trivia_qa
        aliases = list(r["answer"].get("aliases") or []) or [r["answer"]["value"]]
    else:
        aliases = list(r.get("answers") or [])
    if not aliases:
        raise ValueError(f"TriviaQA item {r.get('id', r.get('question_id'))} has no answer aliases")
    q = _unquote(r["question"]).rstrip()
    return {"question": q.rstrip("?") + "?", "aliases": aliases}


def prepare_triviaqa(rows: list[dict], n: int, seed: int) -> list[dict]:
    return [_triviaqa_row(rows[i]) for i in _subset(len(rows), n, seed, "TriviaQA")]


def _truthfulqa_rows_from_csv(path: Path) -> list[dict]:
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for i, r in enumerate(csv.DictReader(f), 2):
            try:
                best, wrong = (
                    r["Best Answer"].strip(),
                    [a.strip() for a in r["Incorrect Answers"].split(";") if a.strip()],
                )
            except KeyError as e:
                raise ValueError(f"{path}: expected the original TruthfulQA columns (missing {e})") from e
            if not best or not wrong:
                raise ValueError(f"{path}: line {i} has no best or no incorrect answer")
            out.append({"question": r["Question"].strip(), "choices": [best] + wrong, "answer": 0})
    return out


def prepare_truthfulqa(rows: list[dict], n: int, seed: int) -> list[dict]:
    return [rows[i] for i in _subset(len(rows), n, seed, "TruthfulQA")]


def _bbh_from_folder(folder: Path) -> dict[str, list[dict]]:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"BBH: no <task>.json files under {folder}")
    out = {}
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        out[f.stem] = [{"input": e["input"], "target": str(e["target"])} for e in data["examples"]]
    return out


def prepare_bbh(tasks: Mapping[str, list[dict]], n: int, seed: int, shots: int) -> list[dict]:
    """Seeded items pooled over BBH's tasks; each gets a 3-shot answer-only prefix from its own task
    (its first examples that are not themselves being scored)."""
    pool = [(t, i) for t in sorted(tasks) for i in range(len(tasks[t]))]
    picked = [pool[j] for j in _subset(len(pool), n, seed, "BBH")]
    chosen = set(picked)
    out = []
    for t, i in picked:
        shot_rows = [e for k, e in enumerate(tasks[t]) if (t, k) not in chosen][:shots]
        prefix = "".join(f"Q: {e['input']}\nA: {e['target']}\n\n" for e in shot_rows)
        e = tasks[t][i]
        out.append({"task": t, "input": e["input"], "prompt": f"{prefix}Q: {e['input']}\nA:", "target": e["target"]})
    return out


def corpus_paragraphs(text: str) -> list[str]:
    """Paragraphs of a plain-text corpus: blocks between blank lines, or (WikiText's layout) single
    long lines; headings (" = Title = ") and short fragments are left out."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text)]
    if len(blocks) < 10:  # WikiText: one paragraph per line, blank lines hold a single space
        blocks = [ln.strip() for ln in text.splitlines()]
    return [b for b in blocks if len(b) >= 200 and not re.fullmatch(r"=.*=", b)]


def prepare_perplexity(paragraphs: list[str], n: int, seed: int, chars: int) -> list[dict]:
    out = []
    for i in _subset(len(paragraphs), n, seed, "perplexity corpus"):
        p = paragraphs[i]
        if len(p) > chars:
            cut = p.rfind(" ", 0, chars)
            p = p[: cut if cut > 0 else chars]
        out.append({"text": p})
    return out


# ---- sources ----------------------------------------------------------------------------------------
def _hf(name: str, config: str | None = None):
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - lm-eval depends on datasets
        raise ImportError("loading benchmark data online needs the 'datasets' package (pip install lm-eval)") from e
    try:
        return datasets.load_dataset(name, config)
    except Exception as e:
        raise ValueError(
            f"could not load {name} online ({e}); give the data as files instead "
            "(AbilityConfig.data_dir / sources, or --ability-data)"
        ) from e


# ---- the tasks: everything editlab knows about each, in one place --------------------------------------
def _load_mmlu(src: Path | None):
    return _mmlu_rows_from_folder(src) if src else _mmlu_rows_online()


def _load_jsonl_or(name: str, config: str | None, split: str):
    def load(src: Path | None) -> list[dict]:
        return _read_jsonl(src) if src else [dict(r) for r in _hf(name, config)[split]]

    return load


def _load_truthfulqa(src: Path | None) -> list[dict]:
    if src:
        return _truthfulqa_rows_from_csv(src)
    return [
        {
            "question": r["question"],
            "choices": list(r["mc1_targets"]["choices"]),
            "answer": list(r["mc1_targets"]["labels"]).index(1),
        }
        for r in _hf("truthfulqa/truthful_qa", "multiple_choice")["validation"]
    ]


def _load_bbh(src: Path | None) -> dict[str, list[dict]]:
    if src:
        return _bbh_from_folder(src)
    import datasets

    names = datasets.get_dataset_config_names("lukaemon/bbh")
    return {t: [{"input": r["input"], "target": r["target"]} for r in _hf("lukaemon/bbh", t)["test"]] for t in names}


def _load_corpus(src: Path | None) -> list[str]:
    if src and src.suffix == ".jsonl":
        return [str(r["text"]).strip() for r in _read_jsonl(src) if len(str(r.get("text", "")).strip()) >= 200]
    return corpus_paragraphs(src.read_text(encoding="utf-8", errors="replace") if src else _wikitext2_online())


_ACC = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
_STRIP = [{"name": "remove_whitespace", "filter": [{"function": "remove_whitespace"}, {"function": "take_first"}]}]


def _letters(k: int):
    def cfg(config: AbilityConfig, shots: int) -> dict:
        return dict(
            output_type="multiple_choice",
            doc_to_text="{{prompt}}",
            doc_to_choice=list("ABCDE"[:k]),
            doc_to_target="answer",
            metric_list=_ACC,
        )

    return cfg


def _gsm8k_lm_eval(config: AbilityConfig, shots: int) -> dict:
    return dict(
        output_type="generate_until",
        doc_to_text="Question: {{question}}\nAnswer:",
        doc_to_target="{{answer}}",
        num_fewshot=shots,
        fewshot_split="train",
        fewshot_config={"sampler": "first_n"},
        generation_kwargs={
            "until": ["Question:", "</s>", "<|im_end|>"],
            "do_sample": False,
            "max_gen_toks": int(config.max_gen_tokens.get("gsm8k", 192)),
        },
        metric_list=[
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": False,
                "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"],
            }
        ],
        filter_list=[
            {
                "name": "flexible-extract",
                "filter": [
                    {"function": "regex", "group_select": -1, "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                    {"function": "take_first"},
                ],
            }
        ],
    )


def _triviaqa_lm_eval(config: AbilityConfig, shots: int) -> dict:
    return dict(
        output_type="generate_until",
        doc_to_text="Question: {{question}}\nAnswer:",
        doc_to_target="{{aliases}}",
        target_delimiter=" ",
        filter_list=_STRIP,
        generation_kwargs={
            "until": ["\n", ".", ","],
            "do_sample": False,
            "max_gen_toks": int(config.max_gen_tokens.get("triviaqa", 24)),
        },
        metric_list=[
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": True,
            }
        ],
    )


def _truthfulqa_lm_eval(config: AbilityConfig, shots: int) -> dict:
    return dict(
        output_type="multiple_choice",
        doc_to_text=TRUTHFULQA_PRIMER + "\n\nQ: {{question}}\nA:",
        doc_to_choice="choices",
        doc_to_target="answer",
        metric_list=_ACC,
    )


def _bbh_lm_eval(config: AbilityConfig, shots: int) -> dict:
    return dict(
        output_type="generate_until",
        doc_to_text="{{prompt}}",
        doc_to_target="{{target}}",
        filter_list=_STRIP,
        generation_kwargs={
            "until": ["\n", "Q:", "</s>"],
            "do_sample": False,
            "max_gen_toks": int(config.max_gen_tokens.get("bbh", 48)),
        },
        metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    )


def _perplexity_lm_eval(config: AbilityConfig, shots: int) -> dict:
    return dict(
        output_type="loglikelihood_rolling",
        doc_to_text="",
        doc_to_target="{{text}}",
        metric_list=[{"metric": "word_perplexity"}, {"metric": "byte_perplexity"}, {"metric": "bits_per_byte"}],
    )


@dataclass(frozen=True)
class Task:
    """One general-ability task: its label, default subset size, file under ``data_dir``, headline
    metric (lm-eval's "metric,filter" key), the accuracy of guessing (``chance``; None where
    guessing has no fixed level), how its rows are read (``load(path or None for online)``), how
    the seeded items and few-shot rows are made (``prepare(config, rows, n, seed)``) and its
    lm-eval task config (``lm_eval(config, number of shots)``)."""

    name: str
    label: str
    default_size: int
    file: str | None
    headline: str
    higher_is_better: bool
    chance: float | None
    load: Callable[[Path | None], Any]
    prepare: Callable[..., tuple[list[dict], list[dict] | None]]
    lm_eval: Callable[[AbilityConfig, int], dict]


# Default sizes finish in a few minutes on two CPU cores with the default 135M model.
REGISTRY: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "mmlu",
            "MMLU (5-shot)",
            20,
            "mmlu",
            "acc,none",
            True,
            0.25,
            _load_mmlu,
            lambda c, rows, n, seed: (prepare_mmlu(rows[0], rows[1], n, seed, c.mmlu_shots), None),
            _letters(4),
        ),
        Task(
            "gsm8k",
            "GSM8K",
            5,
            "gsm8k-test.jsonl",
            "exact_match,flexible-extract",
            True,
            0.0,
            _load_jsonl_or("openai/gsm8k", "main", "test"),
            lambda c, rows, n, seed: prepare_gsm8k(rows, n, seed, c.gsm8k_shots),
            _gsm8k_lm_eval,
        ),
        Task(
            "csqa",
            "CommonsenseQA",
            20,
            "csqa-200.jsonl",
            "acc,none",
            True,
            0.2,
            _load_jsonl_or("tau/commonsense_qa", None, "validation"),
            lambda c, rows, n, seed: (prepare_csqa(rows, n, seed), None),
            _letters(5),
        ),
        Task(
            "triviaqa",
            "TriviaQA",
            20,
            "triviaqa-test-1000.jsonl",
            "exact_match,remove_whitespace",
            True,
            0.0,
            _load_jsonl_or("mandarjoshi/trivia_qa", "rc.nocontext", "validation"),
            lambda c, rows, n, seed: (prepare_triviaqa(rows, n, seed), None),
            _triviaqa_lm_eval,
        ),
        Task(
            "truthfulqa",
            "TruthfulQA MC1",
            10,
            "truthfulqa.csv",
            "acc,none",
            True,
            None,
            _load_truthfulqa,
            lambda c, rows, n, seed: (prepare_truthfulqa(rows, n, seed), None),
            _truthfulqa_lm_eval,
        ),
        Task(
            "bbh",
            "BBH",
            10,
            "bbh",
            "exact_match,remove_whitespace",
            True,
            None,
            _load_bbh,
            lambda c, rows, n, seed: (prepare_bbh(rows, n, seed, c.bbh_shots), None),
            _bbh_lm_eval,
        ),
        Task(
            "perplexity",
            "Perplexity",
            8,
            None,
            "word_perplexity,none",
            False,
            None,
            _load_corpus,
            lambda c, rows, n, seed: (prepare_perplexity(rows, n, seed, c.ppl_chars), None),
            _perplexity_lm_eval,
        ),
    )
}
# Views of the registry, for callers that want one attribute of every task.
TASKS = tuple(REGISTRY)
DEFAULT_SIZES = {t.name: t.default_size for t in REGISTRY.values()}
LABELS = {t.name: t.label for t in REGISTRY.values()}
CHANCE = {t.name: t.chance for t in REGISTRY.values()}


class AbilitySuite:
    """The prepared items and lm-eval tasks for one :class:`AbilityConfig`; score any model state
    with :meth:`evaluate` (the live model) or :meth:`evaluate_lm` (any lm-eval ``LM``)."""

    def __init__(self, config: AbilityConfig | None = None):
        self.config = config or AbilityConfig()
        self.items: dict[str, list[dict]] = {}
        self.shots: dict[str, list[dict]] = {}
        self.sources: dict[str, str] = {}
        for task in self.config.tasks:
            self._prepare(task)
        self._tasks = None

    # where each task's data comes from
    def _source(self, task: str) -> Path | None:
        cfg = self.config
        if cfg.sources.get(task):
            p = Path(cfg.sources[task]).expanduser()
            if not p.exists():
                raise FileNotFoundError(f"{task}: data path {str(p)!r} does not exist")
            return p
        file = REGISTRY[task].file
        if cfg.data_dir and file:
            p = Path(cfg.data_dir).expanduser() / file
            if p.exists():
                return p
        if not cfg.online:
            where = f"sources[{task!r}]" + (" or data_dir" if file else " (a corpus file)")
            raise FileNotFoundError(f"{task}: no data given ({where}) and online loading is off")
        return None

    def _prepare(self, task: str) -> None:
        src = self._source(task)
        self.sources[task] = str(src) if src else "online"
        t = REGISTRY[task]
        items, shots = t.prepare(self.config, t.load(src), int(self.config.sizes[task]), self.config.seed)
        self.items[task] = items
        if shots is not None:  # a task with few-shot rows of its own (GSM8K)
            self.shots[task] = shots

    # lm-eval task configs
    def task_configs(self) -> dict[str, dict]:
        out = {}
        for task in self.config.tasks:
            splits = {"test": self.items[task], **({"train": self.shots[task]} if task in self.shots else {})}
            out[task] = {
                "task": f"editlab_{task}",
                "test_split": "test",
                "custom_dataset": _served(splits),
                "dataset_path": "editlab",
                **REGISTRY[task].lm_eval(self.config, len(self.shots.get(task, []))),
            }
        return out

    def _build(self):
        if self._tasks is None:
            from lm_eval.tasks import TaskManager

            with _quiet():
                manager = TaskManager(include_defaults=False)
                self._tasks = {t: manager.load([cfg]) for t, cfg in self.task_configs().items()}
        return self._tasks

    # scoring
    def evaluate(
        self, handle, progress: Callable[[int, int, str], None] | None = None, cancel=None, prefix: str = ""
    ) -> AbilityResult:
        """Score the live model as it is now. For a session's edited model call it inside
        ``session.edited()`` with that view's ``prefix`` (the text a prompt edit such as IKE puts
        before every prompt): ``with session.edited() as m: suite.evaluate(m.handle, prefix=m.prefix)``."""
        return self.evaluate_lm(live_lm(handle, self.config.batch_size, cancel, prefix), progress, cancel)

    def evaluate_lm(self, lm, progress: Callable[[int, int, str], None] | None = None, cancel=None) -> AbilityResult:
        from lm_eval.evaluator import evaluate

        tasks = self._build()
        out = {}
        for i, (task, obj) in enumerate(tasks.items()):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if progress:
                progress(i, len(tasks), f"ability: {LABELS[task]}")
            t0 = time.perf_counter()
            with _quiet():
                res = evaluate(lm, obj, bootstrap_iters=0, log_samples=True, verbosity="ERROR")
            metrics = {
                k: v
                for k, v in res["results"][f"editlab_{task}"].items()
                if "," in k and not k.split(",")[0].endswith("_stderr")
            }
            key, higher = REGISTRY[task].headline, REGISTRY[task].higher_is_better
            out[task] = TaskScore(
                task=task,
                score=_num(metrics.get(key)),
                metric=key.split(",")[0],
                higher_is_better=higher,
                n=len(self.items[task]),
                metrics=metrics,
                seconds=time.perf_counter() - t0,
                items=tuple(_item(task, s) for s in res["samples"][f"editlab_{task}"]),
            )
        if progress:
            progress(len(tasks), len(tasks), "ability: done")
        return AbilityResult(out)


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _item(task: str, s: dict) -> dict:
    """One scored item, small enough to store: what was asked (short), answered, expected, scored."""
    doc = s["doc"]
    asked = doc.get("question") or doc.get("input") or doc.get("text", "")
    resp = s["filtered_resps"]
    if task in ("mmlu", "csqa", "truthfulqa"):
        lls = [float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in resp]
        choices = ["A", "B", "C", "D", "E"][: len(lls)] if task != "truthfulqa" else doc["choices"]
        output = choices[max(range(len(lls)), key=lls.__getitem__)]
        target = choices[int(doc["answer"])]
        score = s.get("acc")
    elif task == "perplexity":  # lm-eval keeps (log-likelihood, words) per document
        ll, n_words = s.get("word_perplexity") or (None, None)
        output, target = None, None
        score = math.exp(-float(ll) / n_words) if ll is not None and n_words else None
    else:
        output = resp[0] if isinstance(resp, list) else resp
        target = s.get("target")
        score = s.get("exact_match")
    return {
        "input": str(asked)[:300],
        "output": output,
        "target": target if not isinstance(target, list) else target[:5],
        "score": score,
    }


def _served(splits: Mapping[str, list[dict]]):
    """lm-eval's ``custom_dataset`` hook: a callable returning the splits as datasets."""

    def load(**_):
        import datasets

        return datasets.DatasetDict({k: datasets.Dataset.from_list(list(v)) for k, v in splits.items()})

    return load


@contextlib.contextmanager
def _quiet():
    """lm-eval logs a warning per custom task and per run; keep the user's console readable."""
    loggers = [logging.getLogger(n) for n in ("lm_eval", "lm-eval", "datasets")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def live_lm(handle, batch_size: int = 8, cancel=None, prefix: str = ""):
    """lm-eval's HFLM around the live model object (no copy, no reload), checking ``cancel``
    before every forward pass and generation so a sweep stops within one batch.

    ``prefix``: text put before every request's context, as the probes put it before every prompt
    (a prompt edit's context, IKE). A rolling log-likelihood (perplexity) is then that of the text
    after the prefix: one window, the prefix as its context."""
    import dataclasses

    from lm_eval.models.huggingface import HFLM

    def prefixed(requests):
        return [dataclasses.replace(r, arguments=(prefix + r.args[0], *r.args[1:])) for r in requests]

    class LiveLM(HFLM):
        def _check(self):
            if cancel is not None and cancel.is_set():
                raise Cancelled()

        def _model_call(self, *a, **k):
            self._check()
            return super()._model_call(*a, **k)

        def _model_generate(self, *a, **k):
            self._check()
            return super()._model_generate(*a, **k)

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(prefixed(requests) if prefix else requests, disable_tqdm=True)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            if not prefix:
                return super().loglikelihood_rolling(requests, disable_tqdm=True)
            pairs = [
                dataclasses.replace(r, request_type="loglikelihood", arguments=(prefix, r.args[0])) for r in requests
            ]
            return [ll for ll, _ in super().loglikelihood(pairs, disable_tqdm=True)]

        def generate_until(self, requests, disable_tqdm: bool = False):
            return super().generate_until(prefixed(requests) if prefix else requests, disable_tqdm=True)

    with _quiet():
        return LiveLM(
            pretrained=handle.model, tokenizer=handle.tokenizer, batch_size=batch_size, device=str(handle.device)
        )


def _wikitext2_online(timeout: float = 60.0) -> str:
    """WikiText-2's test split as one text (:func:`editlab.model.corpora.wikitext`)."""
    try:
        return "\n".join(corpora.wikitext("wikitext-2-test", timeout))
    except Exception as e:
        raise ValueError(
            f"could not download WikiText-2 ({e}); give a corpus file for perplexity "
            "(AbilityConfig.sources['perplexity'] / --ppl-corpus)"
        ) from e

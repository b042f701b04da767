"""Training SERAC's scope classifier (Mitchell et al., 2022, §3.2) for a model, and measuring it on
held-out facts.

The classifier is trained as the paper trains it, apart from the counterfactual model: binary
cross-entropy on (edit, input) pairs labelled in scope or not. From each CounterFact record:

* in scope of its own edit — the edit prompt, its paraphrase and its negated prompt ("... is not"),
  each followed by a target, labelled at the prompt's last token and at every target position (the
  router decides per position, so teacher-forced targets and generated text must stay in scope);
* out of scope of its own edit — its neighbourhood prompt (another subject, the same relation) and
  its answer, at every position: the hard negatives;
* out of scope of every *other* edit in the batch — all of the above of the other records.

Each of the three kinds weighs the same in the loss, whatever their counts. The base model is frozen
and only read up to the classifier's layer, so its hidden states are computed once per text before the
head is trained. The records used are chosen by :func:`split` to stay clear of every evaluation range
editlab uses.
"""

from __future__ import annotations

import json
import platform
import random
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from editlab.facts.fact import Fact
from editlab.methods.base import HParamsBase, Range
from editlab.methods.keys import pad_batch

# ---- what the training data must stay clear of --------------------------------------------------
# CounterFact positions (0-based, in file order) that editlab's evaluations read:
from editlab.methods.records import (  # noqa: F401  (re-exported: the provenance and tests read them here)
    DEV_RANGE,
    FIRST_N,
    HELDOUT_RANGE,
    NEGATION_POOL,
    NEGATION_SPLITS,
    SEEDED_SEEDS,
    SEEDED_SIZES,
    TRAIN_RANGE,
    Split,
    excluded_positions,
    left_out,
    runs,
    split,
)
from editlab.methods.serac import (
    HParams,
    ScopeClassifier,
    file_sha256,
    file_stem,
    new_classifier,
    position_features,
    save_classifier,
)
from editlab.model.nethook import TraceDict
from editlab.model.tokens import score_continuations, target_ids


# ---- hyperparameters ------------------------------------------------------------------------------
@dataclass
class TrainHParams(HParamsBase):
    layer: int = 4  # the base model's layer the classifier reads (its output)
    dim: int = 256  # the embedding's dimension
    lr: float = 1e-3
    batch_size: int = 32  # edits per step; every other edit's texts are its negatives
    weight_decay: float = 0.0
    max_records: int = 2400  # training records read (each one's hidden states computed once)
    heldout_scope: int = 150  # development and held-out records whose scope decisions are scored (each range)
    heldout_edits: int = 50  # held-out records edited (all in one memory) and scored against the unedited model
    seed: int = 0

    RANGES = {
        "dim": Range(lo=1, hi=4096, why="the scope embedding's dimension"),
        "max_records": Range(lo=1, why="training records"),
        "heldout_scope": Range(lo=0, why="held-out records for the scope scores"),
        "heldout_edits": Range(lo=0, hi=1000, why="held-out records for the edit scores"),
    }
    EASYEDIT_NOT_USED = {
        key: "EasyEdit trains SERAC end to end through a soft mixture; editlab trains the classifier alone (BCE)"
        for key in ("cedit", "cloc", "cbase", "supervised", "soft_weighting", "lr_lr", "edit_lr")
    }

    @classmethod
    def for_model(cls, handle) -> TrainHParams:
        return cls(layer=default_layer(handle))

    def validate(self, handle=None) -> None:
        if handle is not None and self.layer >= handle.arch.n_layers:
            raise ValueError(f"layer {self.layer}: the model has layers 0-{handle.arch.n_layers - 1}")


def default_layer(handle) -> int:
    """An early layer: 4 of SmolLM2-135M's 30 (about an eighth of the depth). Deeper layers let more
    neighbours in (:func:`editlab.methods.serac.position_features`), and an early layer is cheap to train on."""
    return max(0, min(handle.arch.n_layers - 1, round(handle.arch.n_layers * 4 / 30)))


# ---- the training texts -------------------------------------------------------------------------
KINDS = ("prompt", "paraphrase", "negated", "neighbour")  # the first three in scope of their edit


@dataclass(frozen=True)
class Text:
    """One training text of fact ``fact``: its token ids and the first position labelled."""

    fact: int
    kind: str
    ids: tuple[int, ...]
    first: int
    n_prompt: int

    @property
    def in_scope(self) -> bool:
        return self.kind != "neighbour"


def texts_for(tokenizer, fact: Fact, i: int) -> list[Text]:
    """A fact's training texts: its prompt + target_new, paraphrases + target_true, the negated prompt
    + target_true (in scope, labelled from the prompt's last token), its neighbours + their answers
    (out of scope, labelled from the second token)."""
    out = []

    def add(kind, prompt, target):
        pid = list(tokenizer(prompt).input_ids)
        tid = target_ids(tokenizer, target) if target else []
        first = len(pid) - 1 if kind != "neighbour" else min(1, len(pid) - 1)
        out.append(Text(i, kind, tuple(pid + tid), first, len(pid)))

    add("prompt", fact.prompt, fact.target_new)
    for p in fact.paraphrases:
        add("paraphrase", p, fact.target_true or fact.target_new)
    negated, rule = fact.negated("not")
    if negated is not None and not rule.startswith("already-negated"):
        add("negated", negated, fact.target_true or fact.target_new)
    for n in fact.neighbors:
        add("neighbour", n.prompt, n.answer)
    return out


@torch.no_grad()
def text_features(handle, texts: Sequence[Text], layer: int, batch_size: int = 32, progress=None) -> list[torch.Tensor]:
    """The classifier's input at every position of each text ([len, d] float16; the frozen model is
    run up to ``layer`` only, in batches of similar length)."""
    name = handle.arch.layer(layer)
    out: list[torch.Tensor | None] = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda j: len(texts[j].ids))
    for s in range(0, len(order), batch_size):
        part = order[s : s + batch_size]
        ids, mask = pad_batch([texts[j].ids for j in part], handle.tokenizer.pad_token_id, handle.device)
        with TraceDict(handle.model, [name], stop=True) as td:
            handle.model(input_ids=ids, attention_mask=mask)
        feats = position_features(td[name].output.float(), mask).cpu()
        for r, j in enumerate(part):
            out[j] = feats[r, : len(texts[j].ids)].half()
        if progress:
            progress(min(s + batch_size, len(order)), len(order), "hidden states of the training texts")
    return out


# ---- one step -----------------------------------------------------------------------------------
@dataclass
class Batch:
    """Edits' keys [R, d] (their prompts' last positions) and labelled queries [P, d]: ``owner`` the
    edit each query belongs to, ``in_scope`` whether it is in scope of that edit."""

    keys: torch.Tensor
    queries: torch.Tensor
    owner: torch.Tensor
    in_scope: torch.Tensor


def make_batch(texts: Sequence[Text], feats: Sequence[torch.Tensor], facts: Sequence[int]) -> Batch:
    """The batch of the given facts (each fact's texts in ``texts``, their features in ``feats``)."""
    where = {f: r for r, f in enumerate(facts)}
    keys, queries, owner, scope = [None] * len(facts), [], [], []
    for t, x in zip(texts, feats):
        r = where.get(t.fact)
        if r is None:
            continue
        if t.kind == "prompt":
            keys[r] = x[t.n_prompt - 1]
        rows = x[t.first :]
        queries.append(rows)
        owner += [r] * len(rows)
        scope += [t.in_scope] * len(rows)
    if any(k is None for k in keys):
        raise ValueError("every fact of a batch needs its prompt text")
    return Batch(torch.stack(keys).float(), torch.cat(queries).float(), torch.tensor(owner), torch.tensor(scope))


def loss_of(classifier: ScopeClassifier, batch: Batch) -> torch.Tensor:
    """Binary cross-entropy of P(query in scope of edit) over every (query, edit) pair of the batch,
    the three kinds (in scope; out of scope of its own edit; any query against another edit) weighted
    equally."""
    q = classifier.embed_features(batch.queries)
    k = classifier.embed_features(batch.keys)
    logits = classifier.logits(q, k)  # [P, R]
    own = torch.nn.functional.one_hot(batch.owner, len(batch.keys)).bool()
    target = own & batch.in_scope.unsqueeze(1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
    parts = [bce[target], bce[own & ~target], bce[~own]]
    return sum(p.mean() for p in parts if p.numel()) / sum(1 for p in parts if p.numel())


def train_step(classifier: ScopeClassifier, opt: torch.optim.Optimizer, batch: Batch) -> float:
    """One optimiser step on ``batch``; returns the loss before it."""
    classifier.train()
    opt.zero_grad()
    loss = loss_of(classifier, batch)
    if not torch.isfinite(loss):
        raise FloatingPointError("SERAC training: the loss is not finite")
    loss.backward()
    opt.step()
    return float(loss.detach())


def fit_standardisation(classifier: ScopeClassifier, texts: Sequence[Text], feats: Sequence[torch.Tensor]) -> None:
    """μ and σ of the classifier's input over every labelled position of the training texts."""
    rows = torch.cat([x[t.first :].float() for t, x in zip(texts, feats)])
    classifier.mu.copy_(rows.mean(0))
    classifier.sigma.copy_(rows.std(0) + 1e-3)


# ---- held-out scores ----------------------------------------------------------------------------
@torch.no_grad()
def scope_scores(classifier: ScopeClassifier, texts: Sequence[Text], feats: Sequence[torch.Tensor], threshold=0.5):
    """How the classifier decides on held-out facts. Each edit alone in memory: the share of its
    paraphrases and negated prompts in scope at the prompt's last token (recall), of its target
    positions in scope, and of its neighbours out of scope at their last token (precision on
    neighbours). All the held-out edits in memory at once: the share of their prompts, paraphrases
    and neighbours routed to a wrong edit."""
    classifier.eval()
    facts = sorted({t.fact for t in texts})
    batch = make_batch(texts, feats, facts)
    keys = classifier.embed_features(batch.keys)
    cut = float(torch.logit(torch.tensor(threshold)))
    where = {f: r for r, f in enumerate(facts)}
    hits: dict[str, list[bool]] = {k: [] for k in ("paraphrase", "negated", "targets", "neighbour_out", "wrong_edit")}
    for t, x in zip(texts, feats):
        r = where[t.fact]
        logits = classifier.logits(classifier.embed_features(x.float()), keys)  # [len, R]
        end = t.n_prompt - 1
        own = logits[:, r] > cut
        if t.kind in ("paraphrase", "negated"):
            hits[t.kind].append(bool(own[end]))
        if t.in_scope:
            hits["targets"] += own[t.n_prompt :].tolist()
        else:
            hits["neighbour_out"].append(not bool(own[end]))
        margin, best = logits[end].max(-1)
        routed = bool(margin > cut)
        hits["wrong_edit"].append(routed and (int(best) != r or not t.in_scope))
    return {
        "facts": len(facts),
        "paraphrase_recall": _share(hits["paraphrase"]),
        "negated_recall": _share(hits["negated"]),
        "target_positions_in_scope": _share(hits["targets"]),
        "neighbour_precision": _share(hits["neighbour_out"]),
        "wrong_edit_rate_all_in_memory": _share(hits["wrong_edit"]),
        "threshold": threshold,
    }


def _share(xs: list[bool]) -> dict:
    return {"rate": round(sum(xs) / len(xs), 4) if xs else None, "n": len(xs)}


def evaluate_edits(handle, facts: Sequence[Fact], classifier_file: Path, progress=None) -> dict:
    """The held-out facts edited together (one memory), scored teacher forced against the unedited
    model: efficacy (P(new) > P(true) after the prompt), paraphrase (the same after the paraphrase),
    negation (P(true) > P(new) after the negated prompt: the new answer not asserted after "not"),
    neighbourhood (P(true) > P(new) on the neighbour's prompt) and how many neighbour prompts kept
    the unedited logits bit for bit."""
    from editlab.methods.serac import in_memory, load_classifier, memory_entries

    rows, who = [], []
    for i, f in enumerate(facts):
        negated, rule = f.negated("not")
        prompts = [("prompt", f.prompt)] + [("paraphrase", p) for p in f.paraphrases]
        if negated is not None and not rule.startswith("already-negated"):
            prompts.append(("negation", negated))
        prompts += [("neighbour", n.prompt) for n in f.neighbors]
        for kind, p in prompts:
            for which, target in (("new", f.target_new), ("true", f.target_true)):
                rows.append((list(handle.tokenizer(p).input_ids), target_ids(handle.tokenizer, target)))
                who.append((i, kind, which))
    pad = handle.tokenizer.pad_token_id

    def scores():
        out = score_continuations(handle.model, [r[0] for r in rows], [r[1] for r in rows], pad)
        return [(float(tl.mean()), lp) for lp, tl, _ in out]

    if progress:
        progress(0, 1, f"scoring {len(facts)} held-out facts, unedited and with all of them in one memory")
    classifier, _ = load_classifier(classifier_file)
    with handle.lock:
        unedited = scores()
        entries = memory_entries(handle, classifier, list(facts), HParams().threshold)
        with in_memory(handle, classifier, file_sha256(classifier_file), entries):
            edited = scores()
    return {
        "facts": len(facts),
        "edited_together": True,
        "unedited": _edit_metrics(who, unedited),
        "edited": _edit_metrics(who, edited),
        "neighbour_logits_unchanged": sum(
            bool(torch.equal(u[1], e[1])) for u, e, w in zip(unedited, edited, who) if w[1] == "neighbour"
        )
        // 2,
        "neighbours": sum(1 for w in who if w[1] == "neighbour") // 2,
    }


def _edit_metrics(who, scored) -> dict:
    by = {}
    for (i, kind, which), (mean_lp, _) in zip(who, scored):
        by.setdefault((i, kind), {})[which] = mean_lp
    out = {}
    for name, kind, new_wins in (
        ("efficacy", "prompt", True),
        ("paraphrase", "paraphrase", True),
        ("negation", "negation", False),
        ("neighbourhood", "neighbour", False),
    ):
        xs = [(v["new"] > v["true"]) == new_wins for (i, k), v in by.items() if k == kind]
        out[name] = round(sum(xs) / len(xs), 4) if xs else None
    return out


# ---- training -----------------------------------------------------------------------------------
def train(
    handle, records, hp: TrainHParams, steps: int, out_dir, progress: Callable | None = None, ranges: dict | None = None
) -> dict:
    """Train a scope classifier for ``handle`` and write it to ``out_dir`` as ``<model>.safetensors``
    with its provenance beside it (``<model>.json``, also returned).

    ``records``: a :class:`~editlab.facts.datasets.Dataset` (CounterFact: the records are chosen by
    :func:`split`, held-out scores are computed on its held-out range) or a list of :class:`Fact`
    (all of them trained on; no held-out scores). ``progress(done, total, line)`` is told each stage.
    ``ranges``: ``train_range`` / ``dev_range`` / ``heldout_range`` for :func:`split` (a Dataset only).
    """
    hp.validate(handle)
    say = progress or (lambda done, total, line: None)
    t_start = time.perf_counter()
    facts, positions, data = _training_facts(records, hp, ranges or {})
    train_facts = facts["train"]
    texts = [t for i, f in enumerate(train_facts) for t in texts_for(handle.tokenizer, f, i)]
    t0 = time.perf_counter()
    with handle.lock:
        feats = text_features(handle, texts, hp.layer, progress=say)
    features_s = time.perf_counter() - t0
    classifier = new_classifier(handle, hp.layer, hp.dim, hp.seed)
    t0 = time.perf_counter()
    losses = _fit(classifier, texts, feats, len(train_facts), hp, steps, say)
    head_s = time.perf_counter() - t0
    train_seconds = time.perf_counter() - t_start
    out_dir = Path(out_dir)
    path = save_classifier(classifier, handle, out_dir / f"{file_stem(handle.name)}.safetensors")
    prov = {
        "format": "editlab-serac-provenance-1",
        "method": "serac",
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "classifier": classifier.describe(),
        "classifier_sha256": file_sha256(path),
        "hparams": hp.to_dict(),
        "steps": steps,
        "seed": hp.seed,
        "train_seconds": round(train_seconds, 1),
        "timings": {"features_s": round(features_s, 1), "head_s": round(head_s, 1)},
        "texts": {"train": len(texts), "kinds": {k: sum(t.kind == k for t in texts) for k in KINDS}},
        "loss": {"first_100": _mean(losses[:100]), "last_100": _mean(losses[-100:])},
        "data": {**data, "train_positions": runs(positions["train"])},
        "machine": _machine(),
    }
    prov.update(_scores(handle, classifier, facts, positions, path, hp, say))
    path.with_suffix(".json").write_text(json.dumps(prov, indent=1) + "\n")
    return prov


def _fit(classifier, texts, feats, n_facts: int, hp: TrainHParams, steps: int, say) -> list[float]:
    """The classifier's standardisation, then ``steps`` Adam steps on batches of whole facts (each
    fact's in- and out-of-scope texts together); the losses."""
    fit_standardisation(classifier, texts, feats)
    opt = torch.optim.Adam(classifier.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    rng = random.Random(hp.seed)
    by_fact: dict[int, list[int]] = {}
    for j, t in enumerate(texts):
        by_fact.setdefault(t.fact, []).append(j)
    losses = []
    for step in range(steps):
        chosen = rng.sample(range(n_facts), min(hp.batch_size, n_facts))
        idx = [j for f in chosen for j in by_fact[f]]
        batch = make_batch([texts[j] for j in idx], [feats[j] for j in idx], chosen)
        losses.append(train_step(classifier, opt, batch))
        if (step + 1) % 100 == 0 or step + 1 == steps:
            say(step + 1, steps, f"loss {sum(losses[-100:]) / len(losses[-100:]):.4f}")
    classifier.eval()
    return losses


def _scores(handle, classifier, facts, positions, path, hp: TrainHParams, say) -> dict:
    """Scope scores on the development and held-out records, and held-out edit scores."""
    out = {}
    for name, kind in (("dev_scope", "dev"), ("heldout_scope", "heldout")):
        scope_facts = facts[kind][: hp.heldout_scope]
        if scope_facts:
            say(0, 1, f"scope scores on {len(scope_facts)} {kind} records")
            ht = [t for i, f in enumerate(scope_facts) for t in texts_for(handle.tokenizer, f, i)]
            with handle.lock:
                hf = text_features(handle, ht, hp.layer)
            out[name] = scope_scores(classifier, ht, hf)
            out[name]["positions"] = runs(positions[kind][: hp.heldout_scope])
    if facts["heldout"] and hp.heldout_edits:
        t0 = time.perf_counter()
        edits = facts["heldout"][: hp.heldout_edits]
        out["heldout_edits"] = evaluate_edits(handle, edits, path, progress=say)
        out["heldout_edits"]["positions"] = runs(positions["heldout"][: hp.heldout_edits])
        out["heldout_edits"]["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _training_facts(records, hp: TrainHParams, ranges: dict) -> tuple[dict, dict, dict]:
    from editlab.facts.datasets import Dataset

    if isinstance(records, Dataset):
        sp = split(len(records), **ranges)
        train_pos, dev_pos, held_pos = sp.train[: hp.max_records], sp.dev, sp.heldout
        data = {
            "file": Path(records.path).name,
            "sha256": file_sha256(Path(records.path)) if Path(records.path).is_file() else None,
            "records": len(records),
            "format": records.format,
            "split": sp.describe(),
            "left_out": left_out(sp),
        }
        chosen = {"train": train_pos, "dev": dev_pos, "heldout": held_pos}
        return {k: [records.facts[i] for i in v] for k, v in chosen.items()}, chosen, data
    given = list(records)[: hp.max_records]
    if not given or not all(isinstance(f, Fact) for f in given):
        raise ValueError("records: give a Dataset (editlab.facts.datasets) or a non-empty list of Facts")
    pos = tuple(range(len(given)))
    none = {"train": given, "dev": [], "heldout": []}
    return none, {"train": pos, "dev": (), "heldout": ()}, {"file": None, "records": len(given)}


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 5) if xs else None


def _machine() -> dict:
    import transformers

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "processor": platform.machine(),
        "commit": commit,
    }


__all__ = [
    "TrainHParams",
    "train",
    "split",
    "excluded_positions",
    "texts_for",
    "text_features",
    "make_batch",
    "loss_of",
    "train_step",
    "scope_scores",
    "evaluate_edits",
    "Batch",
    "Text",
    "runs",
]

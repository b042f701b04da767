"""Training MEND's editor network (Mitchell et al., 2022, §3.3, Algorithm 1) and measuring it on held-out facts.

One training step takes a batch of edits (x_e, y_e) with their paraphrases x'_e and, for each, an
unrelated locality example x_loc (another record's neighbourhood prompt), and:

  1. computes every edit's gradient factors (u, δ) at the edited layers on the unedited model;
  2. maps them through the editor to ΔW_ℓ = −α_ℓ Σ_t δ̃_t ũ_tᵀ, one update per edit;
  3. runs the model with each edit's update applied to its own rows (the edited weights never leave
     the graph: the update is added to the projections' outputs, x ΔWᵀ, so the model's own weights
     are never changed and nothing needs restoring);
  4. minimises  c_edit · L_e + c_loc · L_loc  over the editor's parameters and the step sizes α:
     L_e the NLL of y_e after x_e and after x'_e under the edited model, L_loc = KL(P_θ(·|x_loc) ‖
     P_θ̃(·|x_loc)) over every position of the locality example (EasyEdit's ``cedit``, ``cloc``).

The records used are chosen by :func:`split` to stay clear of every evaluation range editlab uses.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from editlab.core.bounded import short
from editlab.facts.fact import Fact, Neighbor
from editlab.methods.base import Convert, HParamsBase, Range
from editlab.methods.keys import pad_batch
from editlab.methods.mend import (
    Editor,
    default_layers,
    edit_updates,
    factors,
    file_sha256,
    final_hidden,
    log_probs,
    new_editor,
    save_editor,
    target_nll,
    token_rows,
    write_updates,
)
from editlab.methods.mend import HParams as EditHParams

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
    positions,
    runs,
    split,
)
from editlab.methods.teacher import encode
from editlab.model.nethook import TraceDict
from editlab.model.tokens import score_continuations, target_ids

# L_loc's prompts for an edit: "other", another record's neighbourhood prompt (unrelated to the edit,
# as the paper's NQ questions are for zsRE); "own", the edit's own record's neighbourhood prompt (the
# same relation about another subject: what EasyEdit's CounterFact loader uses, and what an edit
# most easily spills into); "both", one of each.
LOCALITY = ("other", "own", "both")


# ---- hyperparameters of training ----------------------------------------------------------------
def _accumulate(value, data) -> tuple[int, str]:
    from editlab.methods.base import whole_number

    n = whole_number("accumulate_bs", value)
    return n, f"accumulate_bs {n} -> edits_per_step {n} (the edits whose losses one optimiser step averages)"


_VARIANT = "editlab trains the paper's editor: identity-initialised low-rank blocks over [u; δ] (combine), ReLU"


@dataclass
class TrainHParams(HParamsBase):
    """The editor's shape and its training (EasyEdit's ``hparams/TRAINING/MEND`` keys where they mean the same)."""

    layers: list = field(default_factory=lambda: [27, 28, 29])
    rank: int = 32  # of each block's U V (EasyEdit: 1920 for 7B models; low here to keep the file small)
    n_hidden: int = 1  # blocks beyond the first
    norm: bool = True  # normalise u and δ by running mean and standard deviation
    edit_lr: float = 1e-4  # α_ℓ at the start
    lr: float = 1e-4  # Adam's step size for the editor's parameters
    lr_lr: float = 1e-4  # Adam's step size for the α_ℓ
    cedit: float = 0.1  # weight of the edit loss L_e
    # weight of the locality loss L_loc: 10, chosen on the development range after 150 steps (with EasyEdit's 1.0
    # the true object stayed ahead on 5 % of neighbourhood prompts there, 70 % unedited; with 10, on 25 %)
    cloc: float = 10.0
    edits_per_step: int = 8  # edits averaged per optimiser step (EasyEdit: batch_size 1 × accumulate_bs 10)
    locality: str = "both"  # L_loc's prompts: LOCALITY
    grad_clip: float = 100.0
    seed: int = 0

    RANGES = {
        "rank": Range(lo=1, hi=4096, why="of the editor's low-rank weights"),
        "n_hidden": Range(lo=0, hi=8),
        "lr_lr": Range(lo=0, why="0 keeps α fixed"),
        "cedit": Range(lo=0, lo_open=True),
        "cloc": Range(lo=0),
        "edits_per_step": Range(lo=1, hi=256),
        "grad_clip": Range(lo=0, lo_open=True),
    }
    EASYEDIT_RENAMES = {
        "accumulate_bs": Convert("edits_per_step", _accumulate),
        "inner_params": EditHParams.EASYEDIT_RENAMES["inner_params"],
    }
    EASYEDIT_NOT_USED = {
        **{
            k: _VARIANT
            for k in (
                "init",
                "combine",
                "act",
                "mlp_class",
                "one_sided",
                "x_only",
                "delta_only",
                "hidden_dim",
                "shared",
            )
        },
        "cbase": "train_base is off (the base model is never trained)",
        "train_base": "the base model is never trained",
        "dropout": "no dropout in the editor",
        "no_grad_layers": "only the edited layers' gradients are read",
        "lr_scale": "an edit-time factor (the edit's hyperparameters)",
        "max_iters": "give --steps",
        "max_epochs": "give --steps",
        "opt": "Adam",
        "val_batch_size": "held-out scores are measured per edit",
    }

    @classmethod
    def for_model(cls, handle) -> TrainHParams:
        return cls(layers=default_layers(handle))

    def validate(self, handle=None) -> None:
        EditHParams(layers=list(self.layers)).validate(handle)
        if self.locality not in LOCALITY:
            raise ValueError(f"locality {short(self.locality)} is not one of {', '.join(LOCALITY)}")


# ---- one training step --------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """One edit for training: the fact and its locality examples (:data:`LOCALITY`)."""

    fact: Fact
    locality: tuple[Neighbor, ...]


def _updates_hook(handle, editor: Editor, owner: torch.Tensor, factors_t: dict):
    """The forward hook's edit: each row's projection output gets x ΔW_eᵀ of the edit ``owner[row]`` owns,
    computed in factored form, (x Ũ_eᵀ) (−α D̃_e), so no [d_out, d_in] matrix is formed per edit."""
    layer_of = {handle.arch.mlp_out_proj(layer): layer for layer in editor.layers}

    def edit(output, name, inputs):
        u_t, d_t = factors_t[layer_of[name]]  # [E, T, d_in], [E, T, d_out] (zero-padded rows add nothing)
        x = inputs.float()
        coef = torch.bmm(x, u_t[owner].transpose(1, 2))  # [B, S, T]
        return output + torch.bmm(coef, d_t[owner]).to(output.dtype)

    return edit


def train_step(handle, editor: Editor, batch: Sequence[Example], hp: TrainHParams) -> dict:
    """Losses of one step (backward done; the caller steps the optimiser). Rows of the edited pass:
    the edits, their paraphrases, their locality examples, in that order (the unedited pass needs
    no paraphrase)."""
    tok = handle.tokenizer
    n = len(batch)
    edits = [encode(tok, ex.fact.prompt, ex.fact.target_new) for ex in batch]
    paras = [encode(tok, ex.fact.paraphrases[0], ex.fact.target_new) for ex in batch]
    loc_owner = [i for i, ex in enumerate(batch) for _ in ex.locality]
    locs = [encode(tok, nb.prompt, nb.answer) for ex in batch for nb in ex.locality]
    loc_pos = [(i, p) for i, it in enumerate(locs) for p in range(len(it.ids))]
    # 1. (u, δ) of every edit on the unedited model; the locality rows' distributions as they are
    ids, mask = pad_batch([it.ids for it in edits + locs], tok.pad_token_id, handle.device)
    us, deltas, hidden0 = factors(
        handle, editor.layers, ids, mask, lambda h: target_nll(handle, h, edits, list(range(n))).sum()
    )
    with torch.no_grad():
        pre_edit = target_nll(handle, hidden0, edits, list(range(n)))
        lp_loc0 = log_probs(handle, hidden0, [n + i for i, _ in loc_pos], [p for _, p in loc_pos])
    # 2. the editor's factors (ũ, −α δ̃) per edit and layer, zero-padded to a common length
    factors_t = _editor_factors(editor, us, deltas, n)
    # 3. the edited model on every row, each row with its own edit's update
    ids, mask = pad_batch([it.ids for it in edits + paras + locs], tok.pad_token_id, handle.device)
    owner = torch.tensor(list(range(n)) * 2 + loc_owner, device=handle.device)
    names = [handle.arch.mlp_out_proj(layer) for layer in editor.layers]
    hook = _updates_hook(handle, editor, owner, factors_t)
    with torch.enable_grad():
        with TraceDict(
            handle.model,
            names,
            retain_input=True,
            retain_output=False,
            detach=False,
            edit_output=lambda out, name: hook(out, name, td[name].input),
        ) as td:
            hidden1 = final_hidden(handle, ids, mask)
        # 4. the loss: c_edit · L_e (edit and paraphrase rows) + c_loc · KL(P_θ ‖ P_θ̃) on the locality rows
        post = target_nll(handle, hidden1, edits + paras, list(range(2 * n)))
        l_edit = post.mean()
        lp_loc1 = log_probs(handle, hidden1, [2 * n + i for i, _ in loc_pos], [p for _, p in loc_pos])
        l_loc = (lp_loc0.exp() * (lp_loc0 - lp_loc1)).sum(-1).mean()
        loss = hp.cedit * l_edit + hp.cloc * l_loc
        loss.backward()
    return {
        "loss": float(loss.detach()),
        "l_edit": float(l_edit.detach()),
        "l_loc": float(l_loc.detach()),
        "nll_pre": float(pre_edit.mean()),
        "nll_edit": float(post[:n].mean().detach()),
        "nll_para": float(post[n:].mean().detach()),
    }


def _editor_factors(editor: Editor, us: dict, deltas: dict, n: int) -> dict:
    """Per layer, the editor's (ũ, −α δ̃) of each of the ``n`` edits, zero-padded to a common length
    (the editor's input statistics updated on the way)."""
    factors_t = {}
    for layer in editor.layers:
        slot = editor.slot(layer)
        rows = [token_rows(us[layer][i], deltas[layer][i]) for i in range(n)]
        for u, d in rows:
            editor.observe(slot, u, d)
        width = max(u.shape[0] for u, _ in rows)
        outs = [editor(slot, u, d) for u, d in rows]
        u_pad = torch.stack([torch.cat([ut, ut.new_zeros(width - ut.shape[0], editor.d_in)]) for ut, _ in outs])
        d_pad = torch.stack([torch.cat([dt, dt.new_zeros(width - dt.shape[0], editor.d_out)]) for _, dt in outs])
        factors_t[layer] = (u_pad, -editor.edit_lrs[slot] * d_pad)
    return factors_t


# ---- the training loop ----------------------------------------------------------------------------
@dataclass
class TrainResult:
    editor: Editor
    steps: int
    edits_seen: int
    seconds: float
    history: list = field(default_factory=list)
    stopped: str = "steps"  # "steps" or "time"


def examples_of(facts: Sequence[Fact]) -> list[Fact]:
    """The facts training can use: each needs a paraphrase (for L_e) and a neighbour (another edit's L_loc)."""
    return [f for f in facts if f.paraphrases and f.neighbors and f.neighbors[0].answer and f.target_new]


def train(
    handle,
    facts: Sequence[Fact],
    hp: TrainHParams,
    steps: int,
    *,
    editor: Editor | None = None,
    max_seconds: float | None = None,
    log_every: int = 25,
    progress: Callable[[int, int, str], None] | None = None,
    evaluate_every: int = 0,
    dev: Sequence[Fact] = (),
) -> TrainResult:
    """Train (or go on training) an editor for ``handle`` on ``facts`` for ``steps`` optimiser steps (or
    until ``max_seconds``). The model is never changed (the updates live in the graph only)."""
    hp.validate(handle)
    pool = examples_of(facts)
    if len(pool) < 2:
        raise ValueError(f"MEND training needs at least 2 facts with a paraphrase and a neighbour; got {len(pool)}")
    rng = random.Random(hp.seed)
    torch.manual_seed(hp.seed)
    if editor is None:
        editor = new_editor(handle, [int(x) for x in hp.layers], hp.rank, hp.n_hidden, hp.edit_lr, hp.norm, hp.seed)
    editor.to(handle.device).train()
    body = [p for n, p in editor.named_parameters() if n != "edit_lrs"]
    opt = torch.optim.Adam([{"params": body, "lr": hp.lr}, {"params": [editor.edit_lrs], "lr": hp.lr_lr}])
    order: list[int] = []
    history, window = [], []
    t0 = time.perf_counter()
    done, stopped = 0, "steps"
    for step in range(steps):
        batch, order = _next_batch(pool, order, rng, hp)
        opt.zero_grad()
        losses = train_step(handle, editor, batch, hp)
        if not all(math.isfinite(v) for v in losses.values()):
            raise RuntimeError(f"MEND training diverged at step {step + 1}: {losses}")
        torch.nn.utils.clip_grad_norm_(editor.parameters(), hp.grad_clip)
        opt.step()
        done += 1
        window.append(losses)
        out_of_time = max_seconds is not None and time.perf_counter() - t0 > max_seconds
        if done % log_every == 0 or step == steps - 1 or out_of_time:
            row = _row(done, t0, window, editor)
            window = []
            if evaluate_every and dev and done % evaluate_every == 0:
                editor.eval()
                row["dev"] = evaluate(handle, editor, dev)["edited"]
                editor.train()
            history.append(row)
            if progress:
                progress(done, steps, json.dumps(row))
        if out_of_time:
            stopped = "time"
            break
    editor.eval()
    return TrainResult(editor, done, done * hp.edits_per_step, time.perf_counter() - t0, history, stopped)


def _next_batch(pool: list[Fact], order: list[int], rng: random.Random, hp: TrainHParams) -> tuple[list, list[int]]:
    """The next ``edits_per_step`` examples, in epochs of shuffled records, and the order left."""
    if len(order) < hp.edits_per_step:
        fresh = list(range(len(pool)))
        rng.shuffle(fresh)
        order = order + fresh
    chosen, order = order[: hp.edits_per_step], order[hp.edits_per_step :]
    return [_example(pool, i, rng, hp.locality) for i in chosen], order


def _example(pool: list[Fact], i: int, rng: random.Random, locality: str) -> Example:
    """Edit ``pool[i]`` with its locality examples: its own neighbour and another record's (unrelated to this edit)."""
    j = rng.randrange(len(pool) - 1)
    j += j >= i
    own, other = pool[i].neighbors[0], pool[j].neighbors[0]
    return Example(pool[i], {"other": (other,), "own": (own,), "both": (own, other)}[locality])


def _row(done: int, t0: float, window: list[dict], editor: Editor) -> dict:
    """One logged row: the step, the time, the machine's load (other work slows a step), the mean losses."""
    return {
        "step": done,
        "seconds": round(time.perf_counter() - t0, 1),
        "load_average": round(os.getloadavg()[0], 2),
        **{k: round(sum(w[k] for w in window) / len(window), 4) for k in window[0]},
        "edit_lrs": [float(f"{x:.4g}") for x in editor.edit_lrs.detach()],
    }


# ---- held-out scores -------------------------------------------------------------------------------
def _scores(handle, facts: Sequence[Fact]) -> list[dict]:
    """Per fact, on the model as it is now: log P(new) and log P(true) (per-token mean, as the probes
    score them) after the prompt and the paraphrase; log P(neighbour's answer) and log P(new) after the
    neighbour prompt, and the neighbour prompt's most likely next token."""
    tok = handle.tokenizer
    pairs = []
    for f in facts:
        new, true = target_ids(tok, f.target_new), target_ids(tok, f.target_true)
        para, nb = f.paraphrases[0], f.neighbors[0]
        for prompt, target in (
            (f.prompt, new),
            (f.prompt, true),
            (para, new),
            (para, true),
            (nb.prompt, target_ids(tok, nb.answer)),
            (nb.prompt, new),
        ):
            pairs.append((list(tok(prompt).input_ids), target))
    scored = score_continuations(handle.model, [p for p, _ in pairs], [t for _, t in pairs], tok.pad_token_id)
    out = []
    for i in range(len(facts)):
        s = scored[6 * i : 6 * i + 6]
        lp = [float(x[1].mean()) for x in s]
        out.append(
            {
                "prompt_new": lp[0],
                "prompt_true": lp[1],
                "para_new": lp[2],
                "para_true": lp[3],
                "nb_answer": lp[4],
                "nb_new": lp[5],
                "nb_top1": int(s[4][0].argmax()),
            }
        )
    return out


def evaluate(handle, editor: Editor, facts: Sequence[Fact], lr_scale: float = 1.0) -> dict:
    """Each fact edited alone on the unedited model (its weights restored bit for bit after), scored
    before and after: efficacy (P(new) > P(true) after the prompt), paraphrase (the same after the
    paraphrase), neighbourhood (P(neighbour's answer) > P(new) after the neighbour prompt) and the
    share of neighbour prompts whose most likely next token is unchanged."""
    facts = [f for f in examples_of(facts) if f.target_true]
    if not facts:
        raise ValueError("no fact to evaluate: each needs target_true, a paraphrase and a neighbour")
    names = [handle.arch.mlp_out_proj(layer) for layer in editor.layers]
    before = _scores(handle, facts)
    after = []
    for fact in facts:
        saved = {n: handle.weight(n).detach().clone() for n in names}
        try:
            updates, _ = edit_updates(handle, editor, fact, lr_scale)
            write_updates(handle, updates)
            after += _scores(handle, [fact])
        finally:
            with torch.no_grad():
                for n, w in saved.items():
                    handle.weight(n).copy_(w)

    def rates(rows, base=None):
        n = len(rows)
        out = {
            "efficacy": sum(r["prompt_new"] > r["prompt_true"] for r in rows) / n,
            "paraphrase": sum(r["para_new"] > r["para_true"] for r in rows) / n,
            "neighborhood": sum(r["nb_answer"] > r["nb_new"] for r in rows) / n,
        }
        if base is not None:
            out["neighborhood_top1_unchanged"] = sum(a["nb_top1"] == b["nb_top1"] for a, b in zip(rows, base)) / n
            out["mean_dlogp_new_prompt"] = sum(a["prompt_new"] - b["prompt_new"] for a, b in zip(rows, base)) / n
            out["mean_dlogp_new_paraphrase"] = sum(a["para_new"] - b["para_new"] for a, b in zip(rows, base)) / n
        return {k: round(v, 4) for k, v in out.items()}

    return {"n": len(facts), "unedited": rates(before), "edited": rates(after, before)}


# ---- provenance -------------------------------------------------------------------------------------
def _commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--",
                "editlab/methods/mend.py",
                "editlab/methods/mend_train.py",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + (" (with uncommitted changes to MEND)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_editor(
    result: TrainResult,
    handle,
    hp: TrainHParams,
    out: Path,
    *,
    data: dict,
    heldout: dict | None,
    command: str,
    note: str = "",
) -> Path:
    """The editor file and its provenance JSON beside it (same name, ``.json``)."""
    import transformers

    path = save_editor(result.editor, handle, out)
    prov = {
        "method": "mend",
        "model": str(handle.name),
        "fingerprint": handle.fingerprint,
        "revision": handle.revision,
        "editor_file": path.name,
        "sha256": file_sha256(path),
        "editor": result.editor.describe(),
        "hparams": hp.to_dict(),
        "steps": result.steps,
        "edits_seen": result.edits_seen,
        "stopped_by": result.stopped,
        "train_seconds": round(result.seconds, 1),
        "threads": torch.get_num_threads(),
        "device": str(handle.device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _commit(),
        "command": command,
        "data": data,
        "heldout": heldout,
        "history": result.history,
    }
    note = " ".join(x for x in (summary_note(result, heldout), note) if x)
    if note:
        prov["note"] = note
    path.with_suffix(".json").write_text(json.dumps(prov, indent=1) + "\n")
    return path


def summary_note(result: TrainResult, heldout: dict | None) -> str:
    """What an edit's report says about the editor: how long it was trained and how it scored on
    held-out facts against the unedited model, in numbers, and where neighbours suffered, that too."""
    threads = torch.get_num_threads()
    text = (
        f"MEND's editor was trained for {result.steps} steps ({result.edits_seen:,} edits, "
        f"{result.seconds / 60:.0f} min on {threads} CPU thread{'s' * (threads != 1)})"
    )
    if not heldout:
        return text + "; it was not scored on held-out facts."
    e, u = heldout["edited"], heldout["unedited"]
    text += (
        f"; on {heldout['n']} held-out CounterFact facts it reached efficacy {e['efficacy']:.2f} (unedited "
        f"{u['efficacy']:.2f}), paraphrase {e['paraphrase']:.2f} ({u['paraphrase']:.2f}), neighbourhood "
        f"{e['neighborhood']:.2f} ({u['neighborhood']:.2f})"
    )
    if e["neighborhood"] < u["neighborhood"]:
        text += (
            ": its edits spill into other subjects' prompts of the same relation, where the new object "
            "then beats the true one"
        )
    return text + "."


def describe_heldout(h: dict) -> str:
    """One line: the held-out scores after the edit vs the unedited model."""
    e, u = h["edited"], h["unedited"]
    return (
        f"held-out n={h['n']}: efficacy {e['efficacy']:.2f} (unedited {u['efficacy']:.2f}), paraphrase "
        f"{e['paraphrase']:.2f} ({u['paraphrase']:.2f}), neighbourhood {e['neighborhood']:.2f} "
        f"({u['neighborhood']:.2f}), neighbour top-1 unchanged {e['neighborhood_top1_unchanged']:.2f}"
    )


def python_command() -> str:
    return " ".join(short(a, 200) for a in sys.argv)


__all__ = [
    "TrainHParams",
    "Split",
    "split",
    "excluded_positions",
    "train",
    "train_step",
    "evaluate",
    "write_editor",
    "Example",
    "TrainResult",
    "describe_heldout",
    "runs",
    "positions",
]

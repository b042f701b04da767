"""KN: knowledge neurons (Dai et al., 2022, "Knowledge Neurons in Pretrained Transformers").

The MLP is read as a key-value memory: the input of its output projection W_out holds the
"intermediate neurons" a_i, and column i of W_out is neuron i's value vector v_i (output = Σ a_i v_i).

1. Attribution (§3.1, integrated gradients): for the prompt and the *true* target token o,
       Attr(a_i) = a_i · (1/m) Σ_{k=1..m} ∂P(o | prompt; a_i ← (k/m)·a_i) / ∂a_i
   at the prompt's last position, for every neuron of every attributed layer (a multi-token target
   is attributed token by token, teacher forced, and the scores averaged).
2. Selection (§3.2): keep neurons with Attr > ``adaptive_threshold`` · max Attr; with ``refine``,
   repeat over the prompt and its paraphrases and keep neurons found for more than ``p`` of them.
3. Edit (§5.1, "updating facts"): in every selected neuron's value vector, subtract the word
   embedding of the old answer and add the new one:
       v_i ← v_i − λ_old · e(o) + λ_new · e(o*)         (EasyEdit: λ = 2 for one-token targets)
   A multi-token answer uses the mean embedding of its tokens.

Where this departs from the paper and EasyEdit, and why:
* The neurons are the input of the output projection (the paper's definition). EasyEdit hooks
  ``gate_proj``'s output on Llama models, i.e. pre-activation values.
* ``sign_aware`` (default on): a gated MLP (SwiGLU) has negative activations, and adding e(o*)
  to a neuron that fires negatively pushes *away* from o*; the update is multiplied by the sign of
  a_i at the prompt. Off reproduces the published rule (which assumed GELU's positive activations).
* Integrated gradients over k/m for k = 1..m (the paper's Riemann sum); EasyEdit's
  ``linspace(0, 1, steps)`` spends one of its steps on the zero baseline, and with ``steps: 1``
  (its Llama files) computes the gradient at a = 0 only.

KN adds whole embedding vectors to weights: it is the bluntest method here and the first to wreck
the model under sequential edits. The edit's result on its own prompt is checked and reported in
the record (``prompt_check``, ``note``), whatever it is.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import torch

from editlab.facts.fact import Fact
from editlab.methods.base import Capabilities, EditError, HParamsBase, MethodContext, coerce_numbers
from editlab.methods.keys import pad_batch
from editlab.methods.teacher import bleed_check, bleed_note, check_note, control_tokens, prompt_check
from editlab.model.nethook import Trace, TraceDict
from editlab.model.tokens import target_ids

NAME = "kn"
CAPABILITIES = Capabilities()  # several facts: one after another


@dataclass
class HParams(HParamsBase):
    layers: list | None = None  # layers whose neurons are attributed; None = all (paper, EasyEdit)
    steps: int = 20  # m, integrated-gradient steps
    batch_size: int = 20  # IG steps per forward pass
    adaptive_threshold: float = 0.2
    refine: bool = False
    p: float = 0.4
    lambda_old: float = 2.0
    lambda_new: float = 2.0
    lr_scale: float = 1.0  # EasyEdit key (unused there); here it scales both λ
    sign_aware: bool = True
    max_neurons: int = 0  # 0 = no cap; otherwise keep the top-scoring ones
    n_toks: int = 10  # EasyEdit key, unused by EasyEdit's KN as well; accepted for its files

    EASYEDIT_RENAMES = {}

    @classmethod
    def for_model(cls, handle) -> HParams:
        return cls(layers=default_layers(handle))

    def __post_init__(self):
        coerce_numbers(self, ("adaptive_threshold", "p", "lambda_old", "lambda_new", "lr_scale"))
        if isinstance(self.layers, int):
            self.layers = [self.layers]

    def validate(self, handle=None) -> None:
        if handle is not None:
            for layer in self.attributed(handle):
                handle.arch.mlp_out_proj(layer)
        if self.layers is not None and not self.layers:
            raise ValueError("layers is empty: give the layers to attribute, or null for all")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be at least 1")
        if not 0 < self.adaptive_threshold < 1:
            raise ValueError(
                "adaptive_threshold must be in (0, 1): neurons above that fraction of the top score are kept"
            )
        if not 0 <= self.p < 1:
            raise ValueError("p (the sharing fraction for refine) must be in [0, 1)")
        if self.max_neurons < 0:
            raise ValueError("max_neurons must be 0 (no cap) or positive")

    def attributed(self, handle) -> list[int]:
        return list(range(handle.arch.n_layers)) if self.layers is None else [int(x) for x in self.layers]


def default_layers(handle) -> list[int]:
    """The upper half of the network.

    The paper finds knowledge neurons "mostly in the topmost layers"; attributing every layer
    costs twice the time and makes every layer's W_out part of the undo snapshot (30 × 3.5 MB on
    SmolLM2) for neurons that the threshold then rarely picks. ``layers: null`` attributes all.
    """
    n = handle.arch.n_layers
    return list(range(n // 2, n))


def touched(handle, hp: HParams) -> list[str]:
    return [handle.arch.mlp_out_proj(layer) + ".weight" for layer in hp.attributed(handle)]


# ---- 1. attribution ---------------------------------------------------------------------------
def activations(handle, ids: list[int], layers: list[int]) -> dict[int, torch.Tensor]:
    """Neuron activations a (the output projection's input) at the last position, per layer."""
    names = {handle.arch.mlp_out_proj(l): l for l in layers}
    x, m = pad_batch([ids], handle.tokenizer.pad_token_id, handle.device)
    with torch.no_grad(), TraceDict(handle.model, list(names), retain_input=True, retain_output=False, stop=True) as td:
        handle.model(input_ids=x, attention_mask=m)
    return {l: td[n].input[0, -1].detach().float() for n, l in names.items()}


def integrated_gradients(handle, ids: list[int], token: int, layer: int, a: torch.Tensor, hp: HParams) -> torch.Tensor:
    """Attr(a_i) for every neuron of one layer: a ⊙ mean_k ∇_a P(token | ids; a ← (k/m)·a)."""
    module_name = handle.arch.mlp_out_proj(layer)
    module = handle.module(module_name)
    alphas = torch.arange(1, hp.steps + 1, device=a.device, dtype=torch.float32) / hp.steps
    grad_sum = torch.zeros_like(a)
    pos = len(ids) - 1
    for chunk in alphas.split(hp.batch_size):
        scaled = (chunk[:, None] * a[None, :]).requires_grad_(True)  # [n, d_ff]
        n = scaled.shape[0]
        x = torch.tensor([ids] * n, device=handle.device)

        # Replacing the input a at the last position by α·a is the same as replacing the output
        # there by W_out(α·a) (+ bias): edit the output, calling the layer's own forward (no hooks).
        def edit(output, _name):
            out = output.clone()
            out[:, pos] = module.forward(scaled.to(output.dtype)).to(out.dtype)  # noqa: B023 (used within this iteration)
            return out

        with torch.enable_grad(), Trace(handle.model, module_name, retain_output=False, edit_output=edit):
            logits = handle.model(input_ids=x, logits_to_keep=1).logits[:, -1].float()
            prob = torch.softmax(logits, dim=-1)[:, token]
            (grad,) = torch.autograd.grad(prob.sum(), scaled)
        grad_sum += grad.sum(0).float()
    return a * grad_sum / hp.steps


def attribution(
    handle, prompt: str, answer_ids: list[int], layers: list[int], hp: HParams, progress=None
) -> dict[int, torch.Tensor]:
    """Scores per layer for one prompt, averaged over the answer's tokens (teacher forced)."""
    base = list(handle.tokenizer(prompt).input_ids)
    scores = {l: torch.zeros(0) for l in layers}
    total = len(answer_ids) * len(layers)
    done = 0
    for j, token in enumerate(answer_ids):
        ids = base + answer_ids[:j]
        acts = activations(handle, ids, layers)
        for l in layers:
            if progress:
                progress(done, total)
            s = integrated_gradients(handle, ids, token, l, acts[l], hp)
            scores[l] = s if scores[l].numel() == 0 else scores[l] + s
            done += 1
    return {l: s / len(answer_ids) for l, s in scores.items()}


# ---- 2. selection -------------------------------------------------------------------------------
def coarse_neurons(scores: dict[int, torch.Tensor], threshold: float) -> list[tuple[int, int]]:
    top = max(float(s.max()) for s in scores.values())
    if top <= 0:
        return []
    cut = threshold * top
    return [(l, int(i)) for l, s in scores.items() for i in torch.nonzero(s > cut).flatten().tolist()]


def refined_neurons(per_prompt: list[list[tuple[int, int]]], p: float, refine: bool) -> list[tuple[int, int]]:
    counts = collections.Counter(n for neurons in per_prompt for n in set(neurons))
    if not refine:
        return sorted(counts)
    need = p * len(per_prompt)
    return sorted(n for n, c in counts.items() if c > need)


# ---- 3. edit ------------------------------------------------------------------------------------
def mean_embedding(handle, token_ids: list[int]) -> torch.Tensor:
    emb = handle.weight(handle.arch.embed)
    return emb[torch.tensor(token_ids, device=emb.device)].float().mean(0)


@torch.no_grad()
def greedy_tokens(handle, prompt: str, n: int) -> list[int]:
    ids = list(handle.tokenizer(prompt).input_ids)
    out = []
    for _ in range(n):
        logits = handle.model(input_ids=torch.tensor([ids + out], device=handle.device), logits_to_keep=1).logits
        out.append(int(logits[0, -1].argmax()))
    return out


def _old_answer(handle, fact: Fact, n: int) -> tuple[list[int], str]:
    """The answer to suppress: the true target, else the model's greedy answer; and which it is."""
    if fact.target_true:
        return target_ids(handle.tokenizer, fact.target_true), "target_true"
    return greedy_tokens(handle, fact.prompt, n), "the model's greedy answer"


def _select_neurons(
    handle, fact: Fact, old_ids: list[int], layers: list[int], hp: HParams, ctx: MethodContext
) -> list[tuple[int, int]]:
    """Attribute the old answer by integrated gradients on the prompt (and paraphrases when
    refining), keep the neurons above the threshold shared by enough prompts, at most ``max_neurons``."""
    prompts = [fact.prompt] + (list(fact.paraphrases) if hp.refine else [])
    per_prompt = []
    top_scores = {}
    for pi, prompt in enumerate(prompts):

        def progress(done, total, pi=pi):
            ctx.report(done, total, f"KN: integrated gradients for {fact.subject!r} (prompt {pi + 1}/{len(prompts)})")

        scores = attribution(handle, prompt, old_ids, layers, hp, progress)
        per_prompt.append(coarse_neurons(scores, hp.adaptive_threshold))
        if pi == 0:
            top_scores = scores
    neurons = refined_neurons(per_prompt, hp.p, hp.refine)
    if hp.max_neurons and len(neurons) > hp.max_neurons:
        neurons = sorted(neurons, key=lambda n: -float(top_scores[n[0]][n[1]]))[: hp.max_neurons]
    return neurons


def _rewrite(
    handle, fact: Fact, neurons: list[tuple[int, int]], new_ids: list[int], old_ids: list[int], hp: HParams
) -> dict[int, torch.Tensor]:
    """Move each neuron's value vector towards the new answer's embedding and away from the old
    one's (sign-aware); returns the neurons' activations on the prompt."""
    acts = activations(handle, list(handle.tokenizer(fact.prompt).input_ids), sorted({l for l, _ in neurons}))
    direction = hp.lr_scale * (
        hp.lambda_new * mean_embedding(handle, new_ids) - hp.lambda_old * mean_embedding(handle, old_ids)
    )
    for layer, i in neurons:
        sign = 1.0
        if hp.sign_aware and float(acts[layer][i]) < 0:
            sign = -1.0
        w = handle.weight(handle.arch.mlp_out_proj(layer))
        upd = (sign * direction).to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            if handle.arch.conv1d:
                w[i, :] += upd  # Conv1D stores [in, out]: neuron i's value vector is row i
            else:
                w[:, i] += upd
    return acts


def _note(details: list[dict], checks, bleed) -> str | None:
    """The edit's note: facts without a neuron, what the prompt and bleed checks found."""
    notes = []
    empty = [d["subject"] for d in details if not d["neurons"]]
    if empty:
        notes.append(
            "KN found no neuron above the threshold for "
            + ", ".join(map(repr, empty))
            + "; nothing was written for them"
        )
    notes += [n for n in (check_note(NAME, checks), bleed_note(NAME, bleed)) if n]
    return "; ".join(notes) if notes else None


def apply(handle, facts: list[Fact], hp: HParams, ctx: MethodContext) -> dict:
    """Attribute, select and rewrite the knowledge neurons of each fact, one fact after another."""
    t0 = time.perf_counter()
    layers = hp.attributed(handle)
    controls = control_tokens(handle)
    details = []
    for fact in facts:
        new_ids = target_ids(handle.tokenizer, fact.target_new)
        old_ids, old_source = _old_answer(handle, fact, len(new_ids))
        neurons = _select_neurons(handle, fact, old_ids, layers, hp, ctx)
        if not neurons:
            details.append({"subject": fact.subject, "neurons": [], "old_answer_from": old_source})
            continue
        acts = _rewrite(handle, fact, neurons, new_ids, old_ids, hp)
        by_layer = collections.Counter(l for l, _ in neurons)
        details.append(
            {
                "subject": fact.subject,
                "neurons": [list(n) for n in neurons],
                "n_neurons": len(neurons),
                "by_layer": dict(sorted(by_layer.items())),
                "old_answer_from": old_source,
                "negative_activations": sum(1 for l, i in neurons if float(acts[l][i]) < 0),
            }
        )
    checks = prompt_check(handle, facts)
    bleed = bleed_check(handle, facts, controls)
    ctx.report(len(facts), len(facts), "KN: done")
    result = {
        "timings": {"total_kn_s": time.perf_counter() - t0},
        "facts": details,
        "prompt_check": checks,
        "bleed": bleed,
        "layers_attributed": layers,
    }
    note = _note(details, checks, bleed)
    if note:
        result["note"] = note
    if all(not d["neurons"] for d in details):
        raise EditError("KN found no knowledge neuron for any fact (all attribution scores ≤ 0); nothing to edit")
    return result

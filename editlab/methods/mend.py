"""MEND: Model Editor Networks with Gradient Decomposition (Mitchell et al., 2022, "Fast Model Editing
at Scale", §3).

A small editor network, trained beforehand (:mod:`editlab.methods.mend_train`), turns the gradient of
one fact's loss into a weight update in a single step. For a linear layer W (here the MLP output
projections of the last layers) the gradient of the teacher-forced NLL of o* after the prompt is a
sum of rank-one outer products (§3.1):

    ∇_W L = Σ_t δ_t u_tᵀ          u_t: the layer's input at token t, δ_t = ∂L/∂(W u_t), its output's gradient

The editor g maps each token's normalised pair z_t = [(u_t − μ_u)/σ_u ; (δ_t − μ_δ)/σ_δ] to (ũ_t, δ̃_t)
through low-rank residual blocks shared by the edited layers, with a per-layer scale s_ℓ and shift o_ℓ
(§3.2, eq. 4; identity at initialisation):

    h = z + ReLU(s_ℓ ⊙ (U V z + b) + o_ℓ)          (n_hidden + 1 such blocks)

and the edit is one step with a learned per-layer learning rate α_ℓ (eq. 5):

    W̃_ℓ = W_ℓ − α_ℓ Σ_t δ̃_t ũ_tᵀ

``apply`` writes W̃ into the weights (``touched`` names them, so the session's undo is exact); several
facts, or a session's later edits, are written one after another, each from the gradient of the model
as it is then. The editor is per model: editlab ships one for the embedded default model
(``editlab/data/mend``, with its provenance and held-out scores); ``editlab train mend --model ...``
trains one for another model, which an edit then finds in the cache by the model's fingerprint.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from editlab.core import paths
from editlab.core.bounded import short
from editlab.facts.fact import Fact
from editlab.methods import trained
from editlab.methods.base import Capabilities, Convert, EditError, HParamsBase, MethodContext, Range
from editlab.methods.keys import pad_batch
from editlab.methods.teacher import Encoded, bleed_check, bleed_note, check_note, control_tokens, encode, prompt_check
from editlab.methods.trained import file_sha256, file_stem, provenance  # noqa: F401  (public names of this module)
from editlab.model.handle import FAMILIES
from editlab.model.nethook import Trace, TraceDict

NAME = "mend"
# Several facts are written one after another, each with its own one-step update (no joint batch).
CAPABILITIES = Capabilities()

FORMAT = "editlab-mend-1"
SHIPPED_DIR = paths.PACKAGE_DATA / "mend"
EPS = 1e-7  # added to σ in the normalisation, as the reference does
# What training the shipped editor cost (its provenance has the exact figures): said when none is found.
TRAIN_COST_HINT = "about 25 minutes on 2 CPU cores for SmolLM2-135M; longer for larger models"


def default_layers(handle) -> list[int]:
    """The last three layers, whose MLPs the paper edits (EasyEdit's MEND files: the last 3 of 32/48)."""
    n = handle.arch.n_layers
    return list(range(max(0, n - 3), n))


def _layers_from_inner_params(value, data) -> tuple[list[int], str]:
    """EasyEdit's ``inner_params`` (weight names, e.g. ``model.layers.29.mlp.down_proj.weight``) -> ``layers``:
    the layers of the MLP output projections listed; editlab's MEND edits only those matrices."""
    names = value if isinstance(value, (list, tuple)) else [value]
    suffixes = {spec["mlp_out_tmpl"].rsplit(".", 1)[-1] for spec in FAMILIES.values()}
    layers, other = [], []
    for name in names:
        parts = str(name).split(".")
        module = parts[-2] if len(parts) >= 2 and parts[-1] in ("weight", "bias") else parts[-1]
        found = re.search(r"\.(\d+)\.", "." + str(name) + ".")
        if module in suffixes and found and "mlp" in str(name):
            layers.append(int(found.group(1)))
        else:
            other.append(str(name))
    if not layers:
        raise ValueError(
            f"inner_params {short(value)}: no MLP output projection (down_proj, c_proj, fc_out, "
            "dense_4h_to_h) is listed; editlab's MEND edits those, so give e.g. layers: [27, 28, 29]"
        )
    layers = sorted(set(layers))
    how = f"inner_params -> layers {layers} (the MLP output projections listed)"
    if other:
        how += f"; not edited here: {short(other, 120)} (editlab's MEND edits the MLP output projections only)"
    return layers, how


_TRAINED = (
    "set when the editor was trained (the editor file and its provenance hold it); train another with "
    "`editlab train mend`"
)


@dataclass
class HParams(HParamsBase):
    """What an edit with a trained editor can vary. The editor's own settings (rank, learning rates,
    loss weights) were fixed by training: see :class:`editlab.methods.mend_train.TrainHParams`."""

    layers: list = field(default_factory=lambda: [27, 28, 29])  # must be the layers the editor was trained for
    lr_scale: float = 1.0  # multiplies the learned per-layer step sizes α_ℓ (EasyEdit's lr_scale)
    archive: str | None = None  # an editor file (.safetensors); None: the one trained for this model

    RANGES = {"lr_scale": Range(lo=0, lo_open=True, hi=1e3, why="a factor on the learned step sizes")}
    EASYEDIT_RENAMES = {"inner_params": Convert("layers", _layers_from_inner_params)}
    EASYEDIT_NOT_USED = {
        key: _TRAINED
        for key in (
            "lr",
            "edit_lr",
            "lr_lr",
            "cedit",
            "cloc",
            "cbase",
            "rank",
            "n_hidden",
            "hidden_dim",
            "init",
            "norm",
            "combine",
            "shared",
            "act",
            "mlp_class",
            "one_sided",
            "x_only",
            "delta_only",
            "dropout",
            "train_base",
            "no_grad_layers",
            "seed",
            "max_iters",
            "max_epochs",
            "accumulate_bs",
            "grad_clip",
            "opt",
        )
    }

    def __post_init__(self):
        if isinstance(self.layers, (int, float)) and not isinstance(self.layers, bool):
            self.layers = [self.layers]  # one layer given as a number

    @classmethod
    def for_model(cls, handle) -> HParams:
        return cls(layers=default_layers(handle))

    def validate(self, handle=None) -> None:
        if not self.layers:
            raise ValueError("layers is empty: give the layers whose MLP output projections the editor edits")
        if len(set(int(x) for x in self.layers)) != len(self.layers):
            raise ValueError(f"layers {short(self.layers)} lists a layer twice")
        if handle is not None:
            for layer in self.layers:
                handle.arch.mlp_out_proj(int(layer))  # raises a clear range error
        if self.archive is not None and not str(self.archive).strip():
            raise ValueError(
                "archive is empty: give the path of an editor file, or null for the one trained for this model"
            )


def touched(handle, hp: HParams) -> list[str]:
    return [handle.arch.mlp_out_proj(int(layer)) + ".weight" for layer in hp.layers]


# ---- the editor network -----------------------------------------------------------------------
class LowRankBlock(nn.Module):
    """h = z + ReLU(s_ℓ ⊙ (U V z + b) + o_ℓ): one residual block with a rank-r weight U V (§3.2).
    U starts at zero, so the block starts as the identity. The ReLU is a clamp at 0, whose
    gradient at exactly 0 is 1 (the reference's choice: at initialisation every pre-activation is
    0, and a ReLU's zero gradient there would never let U move)."""

    def __init__(self, dim: int, rank: int, n_layers: int):
        super().__init__()
        self.U = nn.Parameter(torch.zeros(dim, rank))
        self.V = nn.Parameter(torch.randn(rank, dim) / math.sqrt(dim))  # unit-scale V z for unit-scale z
        self.b = nn.Parameter(torch.zeros(dim))
        self.scale = nn.Parameter(torch.ones(n_layers, dim))  # s_ℓ
        self.shift = nn.Parameter(torch.zeros(n_layers, dim))  # o_ℓ

    def forward(self, z: torch.Tensor, slot: int) -> torch.Tensor:
        pre = (z @ self.V.T) @ self.U.T + self.b
        return z + (pre * self.scale[slot] + self.shift[slot]).clamp(min=0)


class Editor(nn.Module):
    """g: (u, δ) -> (ũ, δ̃) for each edited layer (a *slot*), plus the learned step sizes α.

    Inputs are normalised per layer by running mean and standard deviation, accumulated while
    training (Welford's update over every token row seen) and frozen afterwards."""

    def __init__(
        self, d_in: int, d_out: int, layers: list[int], rank: int, n_hidden: int, edit_lr: float, norm: bool = True
    ):
        super().__init__()
        self.d_in, self.d_out, self.layers = d_in, d_out, [int(x) for x in layers]
        self.rank, self.n_hidden, self.norm = rank, n_hidden, norm
        n = len(self.layers)
        self.blocks = nn.ModuleList([LowRankBlock(d_in + d_out, rank, n) for _ in range(n_hidden + 1)])
        self.edit_lrs = nn.Parameter(torch.full((n,), float(edit_lr)))  # α_ℓ
        self.register_buffer("count", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("u_mean", torch.zeros(n, d_in, dtype=torch.float64))
        self.register_buffer("u_m2", torch.zeros(n, d_in, dtype=torch.float64))
        self.register_buffer("d_mean", torch.zeros(n, d_out, dtype=torch.float64))
        self.register_buffer("d_m2", torch.zeros(n, d_out, dtype=torch.float64))

    def slot(self, layer: int) -> int:
        return self.layers.index(int(layer))

    @torch.no_grad()
    def observe(self, slot: int, u: torch.Tensor, delta: torch.Tensor) -> None:
        """Fold a batch of token rows into the running mean and variance (Chan et al.'s parallel Welford)."""
        n_b = u.shape[0]
        if n_b == 0:
            return
        n_a = self.count[slot].clone()
        n = n_a + n_b
        for x, mean, m2 in ((u, self.u_mean, self.u_m2), (delta, self.d_mean, self.d_m2)):
            x = x.double()
            mean_b = x.mean(0)
            m2_b = ((x - mean_b) ** 2).sum(0)
            diff = mean_b - mean[slot]
            mean[slot] += diff * n_b / n
            m2[slot] += m2_b + diff**2 * n_a * n_b / n
        self.count[slot] = n

    def normalise(self, slot: int, u: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        if not self.norm:
            return torch.cat([u, delta], -1)
        n = self.count[slot]
        if n < 1:
            raise EditError("MEND: the editor has no input statistics (it was never trained)")
        # one row so far (a first training step whose edits give this layer one token row: the last
        # layer's δ is non-zero only where a target token is predicted): centred, not yet scaled
        u_std = (self.u_m2[slot] / (n - 1)).sqrt().float() if n > 1 else torch.ones_like(u[0])
        d_std = (self.d_m2[slot] / (n - 1)).sqrt().float() if n > 1 else torch.ones_like(delta[0])
        return torch.cat(
            [(u - self.u_mean[slot].float()) / (u_std + EPS), (delta - self.d_mean[slot].float()) / (d_std + EPS)], -1
        )

    def forward(self, slot: int, u: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ũ, δ̃) for token rows u [T, d_in], δ [T, d_out] of the layer in ``slot``."""
        h = self.normalise(slot, u.float(), delta.float())
        for block in self.blocks:
            h = block(h, slot)
        return h[:, : self.d_in], h[:, self.d_in :]

    def update(self, slot: int, u: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """−α_ℓ Σ_t δ̃_t ũ_tᵀ, as [d_out, d_in] (eq. 5): what is added to W_ℓ."""
        u_t, d_t = self(slot, u, delta)
        return -self.edit_lrs[slot] * (d_t.T @ u_t)

    def describe(self) -> dict:
        return {
            "layers": self.layers,
            "rank": self.rank,
            "n_hidden": self.n_hidden,
            "d_in": self.d_in,
            "d_out": self.d_out,
            "norm": self.norm,
            "edit_lrs": [float(x) for x in self.edit_lrs.detach()],
            "parameters": sum(p.numel() for p in self.parameters()),
        }


def new_editor(
    handle, layers: list[int], rank: int, n_hidden: int, edit_lr: float, norm: bool = True, seed: int = 0
) -> Editor:
    """An untrained editor for ``handle``'s MLP output projections at ``layers`` (identity at start)."""
    w = handle.mlp_out_weight(int(layers[0]))  # [out, in]
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return Editor(w.shape[1], w.shape[0], layers, rank, n_hidden, edit_lr, norm)
    finally:
        torch.random.set_rng_state(gen_state)


# ---- editor files -----------------------------------------------------------------------------


def save_editor(editor: Editor, handle, path: Path) -> Path:
    """The editor as safetensors (float32 parameters, float64 statistics); the model's fingerprint
    and the editor's shape in the metadata, so that loading can match and rebuild it."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in editor.state_dict().items()}
    meta = {
        "format": FORMAT,
        "model": str(handle.name),
        "fingerprint": handle.fingerprint,
        "layers": json.dumps(editor.layers),
        "rank": str(editor.rank),
        "n_hidden": str(editor.n_hidden),
        "d_in": str(editor.d_in),
        "d_out": str(editor.d_out),
        "norm": json.dumps(editor.norm),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    path.chmod(0o644)  # package data: readable by every user (safetensors writes the file private)
    return path


def editor_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_editor(path: Path, device=None) -> tuple[Editor, dict]:
    """An editor from its file (and its metadata); a file that is not one says so."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise EditError(f"MEND: editor file {path} not found")
    try:
        meta = editor_metadata(path)
        if meta.get("format") != FORMAT:
            raise ValueError(f"not an editlab MEND editor (format {meta.get('format')!r})")
        editor = Editor(
            int(meta["d_in"]),
            int(meta["d_out"]),
            json.loads(meta["layers"]),
            int(meta["rank"]),
            int(meta["n_hidden"]),
            0.0,
            bool(json.loads(meta.get("norm", "true"))),
        )
        editor.load_state_dict(load_file(str(path)))
    except EditError:
        raise
    except Exception as e:  # a damaged or foreign file: one readable line, never a traceback from deep inside
        raise EditError(
            f"MEND: {path} could not be read as an editor ({type(e).__name__}: {short(str(e), 160)})"
        ) from e
    editor.eval()
    if device is not None:
        editor.to(device)
    return editor, meta


def user_dir() -> Path:
    """Where ``editlab train mend`` writes editors by default (the cache root's ``mend`` folder)."""
    return trained.user_dir("mend")


def editor_files() -> list[Path]:
    """Editor files an edit looks at: the ones shipped with editlab, then those in the cache root."""
    return trained.files("mend")


def find_editor(handle, hp: HParams) -> Path:
    """The editor file for this model and these layers: ``hp.archive`` when given, else the first
    shipped or cached editor whose metadata carries this model's fingerprint. None found: an
    :class:`EditError` that says how to train one and roughly what that costs."""
    layers = [int(x) for x in hp.layers]
    if hp.archive is not None:
        path = Path(str(hp.archive)).expanduser()
        meta = editor_metadata(path) if path.is_file() else None
        if meta is None:
            raise EditError(
                f"MEND: archive {short(str(hp.archive))} is not a file; give the .safetensors file that "
                "`editlab train mend --out FOLDER` wrote"
            )
        if meta.get("fingerprint") != handle.fingerprint:
            raise EditError(
                f"MEND: the editor {path.name} was trained for {meta.get('model')!r} (fingerprint "
                f"{meta.get('fingerprint')}), not for the loaded {handle.name!r} ({handle.fingerprint}); "
                f"an editor works only on the model it was trained on: `editlab train mend --model "
                f"{handle.name}`"
            )
        return path
    found = []
    for path in editor_files():
        try:
            meta = editor_metadata(path)
        except Exception:  # a damaged cache entry is passed over, never trusted
            continue
        if meta.get("format") == FORMAT and meta.get("fingerprint") == handle.fingerprint:
            if json.loads(meta.get("layers", "[]")) == layers:
                return path
            found.append((path, json.loads(meta.get("layers", "[]"))))
    if found:
        path, trained = found[0]
        raise EditError(
            f"MEND: the editor for {handle.name!r} ({path.name}) was trained for layers {trained}, not "
            f"{layers}; edit with layers {trained}, or train one for these: `editlab train mend --model "
            f"{handle.name} --layers {','.join(map(str, layers))}`"
        )
    raise EditError(
        f"MEND needs an editor network trained for this model, and none is shipped or cached for {handle.name!r} "
        f"(fingerprint {handle.fingerprint}). Train one: `editlab train mend --model {handle.name} --data "
        f"counterfact-edit.json` ({TRAIN_COST_HINT}); it is saved under {user_dir()} and found by the next edit. "
        "Or give hparams archive: PATH to an editor file trained for this model."
    )


# ---- the gradient factors u and δ ---------------------------------------------------------------
def _keep_last(model) -> dict:
    """Ask the model for the last position's logits only (``logits_to_keep``, ``num_logits_to_keep`` in
    older transformers): the logits MEND scores are computed from the final norm's output instead, at
    the scored positions only."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return next(({name: 1} for name in ("logits_to_keep", "num_logits_to_keep") if name in params), {})


def final_hidden(handle, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The final norm's output [B, S, d] for a forward pass (with its graph, when one is being built)."""
    with Trace(handle.model, handle.arch.final_norm, retain_output=True, detach=False) as t:
        handle.model(input_ids=ids, attention_mask=mask, **_keep_last(handle.model))
    return t.output


def log_probs(handle, hidden: torch.Tensor, rows: list[int], positions: list[int]) -> torch.Tensor:
    """log P(· | prefix) at each (row, position), [N, vocab]: the unembedding applied to those positions only."""
    h = hidden[torch.tensor(rows, device=hidden.device), torch.tensor(positions, device=hidden.device)]
    return torch.log_softmax(handle.module(handle.arch.unembed)(h).float(), -1)


def target_nll(handle, hidden: torch.Tensor, items: list[Encoded], rows: list[int]) -> torch.Tensor:
    """Mean teacher-forced NLL of each item's target tokens after its prompt (the edit loss), [len(items)]."""
    where = [(row, pos) for row, item in zip(rows, items) for pos in item.target_positions()]
    lp = log_probs(handle, hidden, [r for r, _ in where], [p for _, p in where])
    targets = torch.tensor([t for item in items for t in item.target], device=lp.device)
    token_nll = -lp[torch.arange(len(targets), device=lp.device), targets]
    sizes = [len(item.target) for item in items]
    return torch.stack([chunk.mean() for chunk in token_nll.split(sizes)])


def factors(
    handle, layers: list[int], ids: torch.Tensor, mask: torch.Tensor, loss_fn
) -> tuple[dict, dict, torch.Tensor]:
    """One forward pass: each layer's input u [B, S, d_in] and output gradient δ [B, S, d_out] for
    ``loss_fn(hidden)`` (a sum of per-row losses, so a row's δ is its own loss's gradient), and the
    final hidden states (detached). The weights are untouched: δ is read by adding a zero tensor to
    each projection's output and differentiating with respect to it, so the graph starts at the first
    edited layer and no parameter collects a gradient."""
    names = [handle.arch.mlp_out_proj(int(layer)) for layer in layers]
    zeros: dict[str, torch.Tensor] = {}

    def inject(output, name):
        z = torch.zeros_like(output, requires_grad=True)
        zeros[name] = z
        return output + z

    with torch.enable_grad():
        with TraceDict(handle.model, names, retain_input=True, retain_output=False, edit_output=inject) as td:
            hidden = final_hidden(handle, ids, mask)
        loss = loss_fn(hidden)
        grads = torch.autograd.grad(loss, [zeros[n] for n in names])
    us = {layer: td[n].input.float() for layer, n in zip(layers, names)}
    deltas = {layer: g.float() for layer, g in zip(layers, grads)}
    return us, deltas, hidden.detach()


def token_rows(u: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The token rows that carry gradient (u and δ both non-zero), as [T, d_in] and [T, d_out]:
    padding and the positions after the last scored one contribute nothing to ∇W."""
    u2, d2 = u.reshape(-1, u.shape[-1]), delta.reshape(-1, delta.shape[-1])
    keep = (u2 != 0).any(-1) & (d2 != 0).any(-1)
    return u2[keep], d2[keep]


# ---- the edit -------------------------------------------------------------------------------------
def edit_updates(handle, editor: Editor, fact: Fact, lr_scale: float = 1.0) -> tuple[dict, float]:
    """ΔW_ℓ for one fact on the model as it is now ({layer: [out, in]}), and the fact's loss before."""
    item = encode(handle.tokenizer, fact.prompt, fact.target_new)
    ids, mask = pad_batch([item.ids], handle.tokenizer.pad_token_id, handle.device)
    us, deltas, hidden = factors(handle, editor.layers, ids, mask, lambda h: target_nll(handle, h, [item], [0]).sum())
    with torch.no_grad():
        loss = float(target_nll(handle, hidden, [item], [0])[0])
    out = {}
    with torch.no_grad():
        for layer in editor.layers:
            u, d = token_rows(us[layer][0], deltas[layer][0])
            out[layer] = lr_scale * editor.update(editor.slot(layer), u, d)
    return out, loss


def write_updates(handle, updates: dict) -> dict:
    """W ← W + ΔW for each layer (ΔW as [out, in]; transposed for Conv1D weights); returns ‖ΔW‖/‖W‖."""
    rel = {}
    with torch.no_grad():
        for layer, upd in updates.items():
            weight = handle.weight(handle.arch.mlp_out_proj(layer))
            upd = (upd.T if handle.arch.conv1d else upd).to(weight.device)
            rel[layer] = float(upd.norm() / weight.float().norm())
            weight.copy_((weight.float() + upd).to(weight.dtype))
    return rel


def apply(handle, facts: list[Fact], hp: HParams, ctx: MethodContext) -> dict:
    """Write each fact with the trained editor's one-step update (several facts: one after another)."""
    path = find_editor(handle, hp)
    editor, meta = load_editor(path, handle.device)
    prov = provenance(path)
    controls = control_tokens(handle)
    details = []
    for i, fact in enumerate(facts):
        ctx.report(i, len(facts), f"MEND: the editor's update for {fact.subject!r}")
        updates, loss = edit_updates(handle, editor, fact, hp.lr_scale)
        rel = write_updates(handle, updates)
        details.append(
            {
                "subject": fact.subject,
                "loss_before": round(loss, 4),
                "relative_update": {str(k): round(v, 6) for k, v in rel.items()},
            }
        )
    checks = prompt_check(handle, facts)
    bleed = bleed_check(handle, facts, controls)
    ctx.report(len(facts), len(facts), "MEND: done")
    result = {
        "editor": str(path),
        "editor_trained": _trained_summary(prov),
        "layers": editor.layers,
        "edit_lrs": [round(float(x) * hp.lr_scale, 8) for x in editor.edit_lrs.detach()],
        "facts": details,
        "prompt_check": checks,
        "bleed": bleed,
    }
    notes = [n for n in (check_note("MEND", checks), bleed_note("MEND", bleed), prov.get("note")) if n]
    if notes:
        result["note"] = "; ".join(notes)
    return result


def _trained_summary(prov: dict) -> dict:
    keys = ("steps", "edits_seen", "train_seconds", "heldout")
    return {k: prov[k] for k in keys if k in prov}


__all__ = [
    "NAME",
    "CAPABILITIES",
    "HParams",
    "touched",
    "apply",
    "Editor",
    "new_editor",
    "load_editor",
    "save_editor",
    "find_editor",
    "factors",
    "token_rows",
    "target_nll",
    "log_probs",
    "final_hidden",
    "edit_updates",
    "write_updates",
    "file_stem",
]

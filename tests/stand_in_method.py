"""``shift``: a stand-in editing method for runner tests (benchmark, CLI, page).

A fixed, seeded rank-one change to one MLP output projection per fact: cheap, deterministic and
visible in the probabilities, so protocol tests run on the real model without paying for real edits.
Register it with ``monkeypatch.setitem(editlab.methods.REGISTRY, NAME, MODULE)``.
"""

from dataclasses import dataclass

import torch

from editlab.methods.base import Capabilities, EditError, HParamsBase

NAME = "shift"
MODULE = __name__
CAPABILITIES = Capabilities()


@dataclass
class HParams(HParamsBase):
    layer: int = 5
    scale: float = 2.0
    fail: bool = False  # raise EditError instead of editing

    @classmethod
    def for_model(cls, handle):
        return cls()


def touched(handle, hp):
    return [handle.arch.mlp_out_proj(hp.layer) + ".weight"]


def apply(handle, facts, hp, ctx):
    if hp.fail:
        raise EditError("stand-in failure")
    w = handle.weight(handle.arch.mlp_out_proj(hp.layer))
    for f in facts:
        g = torch.Generator().manual_seed(sum(map(ord, f.subject)))
        u = torch.randn(w.shape[0], generator=g)
        v = torch.randn(w.shape[1], generator=g)
        with torch.no_grad():
            w += hp.scale * torch.outer(u / u.norm(), v / v.norm()).to(w.dtype)
    ctx.info["stats_source"] = "none (test stand-in)"
    return {"timings": {"apply_s": 0.0}}

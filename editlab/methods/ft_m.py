"""FT-M: constrained fine-tuning of one MLP output projection with the teacher-forced cross-entropy
masked to the target tokens (EasyEdit's FT with ``objective_optimization: target_new``).

The algorithm is in :mod:`editlab.methods.ft`; this module fixes the objective.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import MethodContext
from .ft import FTHParams, default_layer, ft_apply, ft_touched

NAME = "ft-m"
OBJECTIVE = "target_new"


@dataclass
class HParams(FTHParams):
    objective_optimization: str = OBJECTIVE

    @classmethod
    def for_model(cls, handle) -> "HParams":
        return cls(layers=[default_layer(handle)])

    def validate(self, handle=None) -> None:
        super().validate(handle)
        if self.objective_optimization != OBJECTIVE:
            raise ValueError(
                f"FT-M optimises objective_optimization 'target_new'; these hyperparameters ask for "
                f"{self.objective_optimization!r}, which is FT-L: use the method 'ft-l'"
            )


def touched(handle, hp: HParams) -> list[str]:
    return ft_touched(handle, hp)


def apply(handle, facts, hp: HParams, ctx: MethodContext) -> dict:
    return ft_apply(NAME, handle, facts, hp, ctx)

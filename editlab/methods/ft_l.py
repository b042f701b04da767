"""FT-L: constrained fine-tuning of one MLP output projection, loss read at the prompt's last token
(the ROME paper's FT-L baseline; EasyEdit's FT with ``objective_optimization: prompt_last``).

The algorithm is in :mod:`editlab.methods.ft`; this module fixes the objective.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import MethodContext
from .ft import FTHParams, default_layer, ft_apply, ft_touched

NAME = "ft-l"
OBJECTIVE = "prompt_last"


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
                f"FT-L optimises objective_optimization 'prompt_last'; these hyperparameters ask for "
                f"{self.objective_optimization!r}, which is FT-M: use the method 'ft-m'"
            )


def touched(handle, hp: HParams) -> list[str]:
    return ft_touched(handle, hp)


def apply(handle, facts, hp: HParams, ctx: MethodContext) -> dict:
    return ft_apply(NAME, handle, facts, hp, ctx)

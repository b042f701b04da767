"""FT-M: constrained fine-tuning of one MLP output projection with the teacher-forced cross-entropy
masked to the target tokens (EasyEdit's FT with ``objective_optimization: target_new``).

The algorithm is in :mod:`editlab.methods.ft`; this module fixes the objective.
"""

from __future__ import annotations

from editlab.methods.base import Capabilities
from editlab.methods.ft import variant

NAME = "ft-m"
CAPABILITIES = Capabilities(batch=True)  # every fact in each optimisation step
OBJECTIVE = "target_new"
HParams, touched, apply = variant(NAME, OBJECTIVE, other="ft-l", module=__name__)

"""FT-L: constrained fine-tuning of one MLP output projection, loss read at the prompt's last token
(the ROME paper's FT-L baseline; EasyEdit's FT with ``objective_optimization: prompt_last``).

The algorithm is in :mod:`editlab.methods.ft`; this module fixes the objective.
"""

from __future__ import annotations

from editlab.methods.base import Capabilities
from editlab.methods.ft import variant

NAME = "ft-l"
CAPABILITIES = Capabilities(batch=True)  # every fact in each optimisation step
OBJECTIVE = "prompt_last"
HParams, touched, apply = variant(NAME, OBJECTIVE, other="ft-m", module=__name__)

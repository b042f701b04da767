"""Facts and the text around them: :class:`Fact`, English negation of a prompt, dataset readers.

May import: :mod:`editlab.core`. No torch, no model.
"""

from editlab.facts.fact import Fact, Neighbor, negate

__all__ = ["Fact", "Neighbor", "negate"]

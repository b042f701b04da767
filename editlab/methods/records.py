"""The CounterFact records a trained component (MEND's editor, SERAC's scope classifier) may learn
from: every position an editlab evaluation reads is left out, and training, development and held-out
ranges are chosen inside what is left."""

from __future__ import annotations

import random

FIRST_N = 1000  # sweeps, `reproduce muting` and the tests take the first n facts (n up to 1,000)
NEGATION_SPLITS = ((1000, 30), (2000, 50), (3000, 50))  # benchmarks/negation.py SPLITS (dev, test, test2)
NEGATION_POOL = 5000  # benchmarks/negation.py POOL: records 5000.. give the negation probes' other subjects
SEEDED_SIZES = range(1, 1001)  # bench / reproduce / grid: Dataset.subset(n, seed) for n up to 1,000 ...
SEEDED_SEEDS = (0,)  # ... at the default seed
# Chosen here, inside what is left: training, a development range (for choices made while
# training, never reported as held-out) and the held-out range the provenance reports.
TRAIN_RANGE = (FIRST_N, 4600)
DEV_RANGE = (4600, 4800)
HELDOUT_RANGE = (4800, NEGATION_POOL)


def excluded_positions(n_records: int) -> set[int]:
    """Every position an editlab evaluation reads: the first ``FIRST_N``, the negation splits, the
    negation pool and the seeded subsets (``Dataset.subset(n, seed)``) for every size in
    ``SEEDED_SIZES`` and seed in ``SEEDED_SEEDS``."""
    out = set(range(min(FIRST_N, n_records)))
    for start, n in NEGATION_SPLITS:
        out |= set(range(start, start + n))
    out |= set(range(NEGATION_POOL, max(NEGATION_POOL, n_records)))
    for seed in SEEDED_SEEDS:
        rng_picks = set()
        for k in SEEDED_SIZES:
            if k >= n_records:
                break
            rng_picks |= set(random.Random(seed).sample(range(n_records), k))
        out |= rng_picks
    return out

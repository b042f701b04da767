"""The CounterFact records a trained component (MEND's editor, SERAC's scope classifier) may learn
from: every position an editlab evaluation reads is left out, and training, development and held-out
ranges are chosen inside what is left."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Split:
    """Record positions for training, development and held-out evaluation, and how many were left out."""

    train: tuple[int, ...]
    dev: tuple[int, ...]
    heldout: tuple[int, ...]
    excluded: int

    def describe(self) -> dict:
        return {
            "train": runs(self.train),
            "dev": runs(self.dev),
            "heldout": runs(self.heldout),
            "n_train": len(self.train),
            "n_dev": len(self.dev),
            "n_heldout": len(self.heldout),
        }


def split(n_records: int, train_range=TRAIN_RANGE, dev_range=DEV_RANGE, heldout_range=HELDOUT_RANGE) -> Split:
    """Positions for training, development and held-out evaluation: each range minus
    :func:`excluded_positions`; the three ranges must not overlap."""
    ranges = sorted([train_range, dev_range, heldout_range])
    for (a0, a1), (b0, b1) in zip(ranges, ranges[1:]):
        if b0 < a1:
            raise ValueError(f"the ranges {a0}-{a1} and {b0}-{b1} overlap: training and evaluation must be disjoint")
    bad = excluded_positions(n_records)

    def keep(r):
        return tuple(i for i in range(r[0], min(r[1], n_records)) if i not in bad)

    out = Split(keep(train_range), keep(dev_range), keep(heldout_range), len(bad))
    if not out.train:
        raise ValueError(
            f"no training records left in positions {train_range[0]}-{train_range[1]} of a file of "
            f"{n_records:,} (editlab's evaluations use the first {FIRST_N:,}, the negation splits and "
            "the seeded subsets): give a larger file or other ranges"
        )
    return out


def left_out(split: Split) -> dict:
    """What a trained component's provenance says was left out of its records: the evaluation ranges."""
    return {
        "first_n": FIRST_N,
        "negation_splits": NEGATION_SPLITS,
        "negation_pool_from": NEGATION_POOL,
        "seeded_subsets": {"sizes": f"1-{max(SEEDED_SIZES)}", "seeds": list(SEEDED_SEEDS)},
        "positions_left_out": split.excluded,
    }


def runs(positions: Sequence[int]) -> list[str]:
    """["first-last", ...] (a single position as "p"): consecutive positions as closed ranges, a
    compact and exact record of a set; :func:`positions` reads it back."""
    spans: list[list[int]] = []
    for p in sorted(positions):
        if spans and p == spans[-1][1] + 1:
            spans[-1][1] = p
        else:
            spans.append([p, p])
    return [f"{a}-{b}" if b > a else str(a) for a, b in spans]


def positions(ranges: Sequence) -> list[int]:
    """The positions :func:`runs` wrote ("a-b" or "p"; ``[a, b]`` pairs, an earlier provenance form, too)."""
    out = []
    for item in ranges:
        if isinstance(item, (list, tuple)):
            a, b = item
        else:
            a, _, b = str(item).partition("-")
        out += range(int(a), int(b or a) + 1)
    return out

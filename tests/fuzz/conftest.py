"""Hypothesis profiles for the fuzz tests.

``ci`` (the default): seeded and reproducible (``derandomize``), a modest number of examples per
property, no example database, so the folder runs in about a minute on two cores and fails the
same way on every machine. ``long``: thousands of fresh random examples per property, for a
search run by hand::

    HYPOTHESIS_PROFILE=long python3 -m pytest tests/fuzz
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=5000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

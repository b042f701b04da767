"""Measuring a model state: the probe suite and its report (:mod:`.probes`), the calibrated
True/False fact-check, every metric, general ability, the muting detector, causal tracing.

May import: :mod:`editlab.core`, :mod:`editlab.facts`, :mod:`editlab.model`. Never a method or a run.
"""

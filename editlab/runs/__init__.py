"""Runs: the one experiment loop (:mod:`.experiments`), the run store (:mod:`.store`) and the one
module that writes and resumes runs in it (:mod:`.writer`), and the runners built on them — bench,
sweep, grid (in-process or on Ray), reproduce and its report (:mod:`.findings`).

May import: everything below it — :mod:`editlab.core`, :mod:`editlab.facts`, :mod:`editlab.model`,
:mod:`editlab.methods`, :mod:`editlab.measure`, :mod:`editlab.session`. Never a front end.
"""

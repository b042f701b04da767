"""Operator limits: how much one request may ask of the server.

The defaults keep a free 2-core Space responsive for several visitors; an operator raises or lowers
each one with an environment variable (``EDITLAB_MAX_PROMPT_CHARS=4000``; ``0`` or ``off`` removes
that limit). The library's entry points check them (facts, hyperparameters, datasets, edits,
sweeps, benchmarks), so a front end cannot forget to; the app shows them on its start page.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from editlab.core.bounded import short

ENV_PREFIX = "EDITLAB_"


class LimitError(ValueError):
    """A request asked for more than this server allows."""


@dataclass(frozen=True)
class Limits:
    max_prompt_chars: int = 1000  # a subject, prompt, paraphrase or neighbour prompt
    max_target_chars: int = 400  # a target or a neighbour's answer (zsRE has 314)
    max_probe_prompts: int = 32  # paraphrases + neighbours of one fact
    max_upload_bytes: int = 2_000_000  # one uploaded dataset file
    max_facts: int = 100  # facts in one run (a benchmark, a sweep) or one edit call
    max_edits: int = 100  # edits in one sweep (its largest count)
    max_steps: int = 200  # optimisation / integration steps of one edit
    max_template_tokens: int = 32  # length of one generated context template
    max_templates: int = 64  # context templates generated in all
    max_generation_tokens: int = 64  # greedy tokens of one generation probe
    max_runs_per_visitor: int = 1  # benchmark or sweep runs one visitor may have going at once
    max_run_seconds: int = 1800  # wall time of one benchmark or sweep run

    # What each limit bounds, for messages and the start page.
    DESCRIPTIONS = {
        "max_prompt_chars": "characters in a subject or prompt",
        "max_target_chars": "characters in a target or answer",
        "max_probe_prompts": "paraphrases and neighbours of one fact",
        "max_upload_bytes": "bytes in an uploaded file",
        "max_facts": "facts in one run or edit",
        "max_edits": "edits in one sweep",
        "max_steps": "optimisation steps of one edit",
        "max_template_tokens": "tokens in one context template",
        "max_templates": "context templates in all",
        "max_generation_tokens": "tokens generated per probe",
        "max_runs_per_visitor": "runs going at once per visitor",
        "max_run_seconds": "seconds of wall time per run",
    }

    @staticmethod
    def env_name(name: str) -> str:
        return ENV_PREFIX + name.upper()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """The defaults with every ``EDITLAB_MAX_...`` variable set in ``env`` (default: os.environ)."""
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(cls.env_name(f.name))
            if raw is None or not raw.strip():
                continue
            text = raw.strip().lower().replace("_", "")
            if text in ("off", "none", "unlimited"):
                values[f.name] = 0
                continue
            try:
                value = int(float(text))
            except ValueError:
                raise ValueError(
                    f"{cls.env_name(f.name)}={raw!r}: give a whole number (0 or 'off' for no limit)"
                ) from None
            if value < 0:
                raise ValueError(f"{cls.env_name(f.name)}={raw!r}: give a number >= 0 (0 or 'off' for no limit)")
            values[f.name] = value
        return cls(**values)

    def replace(self, **changes) -> Limits:
        return dataclasses.replace(self, **changes)

    def check(self, name: str, value: float, what: str | None = None) -> None:
        """Raise :class:`LimitError` when ``value`` is above the limit ``name`` (0 = no limit)."""
        limit = getattr(self, name)
        if limit and value > limit:
            what = what or self.DESCRIPTIONS[name]
            shown = f"{value:,}" if value < 10**30 else short(value)  # a YAML whole number may have 4,300 digits
            raise LimitError(
                f"{what}: {shown} is above this server's limit of {limit:,} "
                f"({self.DESCRIPTIONS[name]}); ask for less, or the operator can raise it "
                f"with {self.env_name(name)}"
            )

    def rows(self) -> list[dict]:
        """One row per limit: what it bounds, its value ("no limit" for 0), the variable that sets it."""
        return [
            {
                "limit": self.DESCRIPTIONS[f.name],
                "value": f"{getattr(self, f.name):,}" if getattr(self, f.name) else "no limit",
                "variable": self.env_name(f.name),
            }
            for f in fields(self)
        ]


def current() -> Limits:
    """The limits in force now (read from the environment on each call, so a test or an operator
    changing a variable takes effect at once)."""
    return Limits.from_env()


class RunSlots:
    """How many runs each visitor has going, bounded by ``max_runs_per_visitor`` (in-process:
    one Space is one process). ``with SLOTS.hold(owner): ...`` around a benchmark or sweep."""

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    def running(self, owner: str) -> int:
        with self._lock:
            return self._running.get(owner, 0)

    def hold(self, owner: str | None, limits: Limits | None = None):
        import contextlib

        limits = limits or current()

        @contextlib.contextmanager
        def held():
            key = owner or "-"
            with self._lock:
                n = self._running.get(key, 0)
                if limits.max_runs_per_visitor and n >= limits.max_runs_per_visitor:
                    raise LimitError(
                        f"you already have {n} run{'s' if n != 1 else ''} going, this server's limit "
                        f"({Limits.DESCRIPTIONS['max_runs_per_visitor']}); wait for it to finish or stop it"
                    )
                self._running[key] = n + 1
            try:
                yield
            finally:
                with self._lock:
                    self._running[key] -= 1
                    if not self._running[key]:
                        del self._running[key]

        return held()


SLOTS = RunSlots()


def deadline(limits: Limits | None = None, what: str = "this run"):
    """A function that raises :class:`LimitError` once ``max_run_seconds`` have passed since this
    call (a no-op without that limit); runs call it between edits."""
    import time

    limits = limits or current()
    seconds = limits.max_run_seconds
    end = time.monotonic() + seconds if seconds else None

    def check() -> None:
        if end is not None and time.monotonic() > end:
            raise LimitError(
                f"{what} ran past this server's limit of {seconds:,} seconds of wall time "
                f"(EDITLAB_MAX_RUN_SECONDS); what was measured so far is kept: run it again to resume, "
                "or ask for fewer facts"
            )

    return check

"""Whose turn it is on a shared model: a first-come, first-served line of requests.

Several visitors of one app share one resident model, and an edit or a probe run holds it for
seconds. :class:`Turns` (one per :class:`~editlab.model.handle.ModelHandle`, ``handle.turns``) lines
their requests up in the order they came: a request waits until every one before it has finished,
and while it waits it hears, every ``poll_s`` seconds, its place in the line and an estimate of
the wait (:class:`Wait`). The estimate is the running request's expected time left plus the
expected time of each waiting one ahead, each expected time being the median of the last few
requests of the same kind ("edit rome", "probe") on this model; a kind not yet timed makes the
estimate unknown (None), never a guess. Imports nothing from editlab.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass
class Ticket:
    """One request in the line: who asked (``owner``), for what (``kind``), when it joined and,
    once its turn came, when it started."""

    id: int
    owner: str
    kind: str
    joined: float
    started: float | None = None


@dataclass(frozen=True)
class Wait:
    """What a waiting request is told: ``place`` (1 = next), the requests ahead of it (``running``:
    the one holding the model, if any, and ``waiting`` before it), and ``eta_s``, the expected
    seconds until its turn (None while a kind ahead has never been timed)."""

    place: int
    running: str | None
    waiting: int
    eta_s: float | None
    waited_s: float

    def line(self) -> str:
        """ "In line: 2nd; ahead of you: an edit (rome) running and 1 request waiting; about 12 s"."""
        ahead = []
        if self.running:
            ahead.append(f"{_describe(self.running)} running")
        if self.waiting:
            ahead.append(f"{self.waiting} request{'s' if self.waiting != 1 else ''} waiting")
        eta = (
            f"about {self.eta_s:.0f} s until your turn"
            if self.eta_s is not None
            else "an estimate comes once a request like the ones ahead has been timed"
        )
        return (
            f"In line: {_ordinal(self.place)}; ahead of you: {' and '.join(ahead) or 'nothing'}; {eta} "
            f"(waited {self.waited_s:.0f} s)"
        )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _describe(kind: str) -> str:
    what, _, detail = kind.partition(" ")
    article = "an" if what[:1] in "aeiou" else "a"
    return f"{article} {what}" + (f" ({detail})" if detail else "")


class Turns:
    """A first-come, first-served line for one shared resource (see the module docstring).
    ``history``: how many durations per kind the estimate's median is taken over."""

    def __init__(self, history: int = 8, clock: Callable[[], float] = time.monotonic):
        self._cond = threading.Condition()
        self._line: list[Ticket] = []  # in order; the first holds the model once started
        self._durations: dict[str, deque] = {}
        self._ids = itertools.count(1)
        self._history = int(history)
        self._clock = clock

    def expected(self, kind: str) -> float | None:
        """The median duration of the last requests of this kind, or None if none was timed."""
        with self._cond:
            got = self._durations.get(kind)
            return statistics.median(got) if got else None

    def record(self, kind: str, seconds: float) -> None:
        """Add a duration for ``kind`` (the line records its own; a caller may seed one)."""
        with self._cond:
            self._durations.setdefault(kind, deque(maxlen=self._history)).append(float(seconds))

    def snapshot(self) -> list[Ticket]:
        """The line as it is now (copies), first = the request holding the model or next to."""
        with self._cond:
            return [Ticket(**vars(t)) for t in self._line]

    def _wait_info(self, ticket: Ticket, now: float) -> Wait:
        ahead = self._line[: self._line.index(ticket)]
        running = next((t for t in ahead if t.started is not None), None)
        eta: float | None = 0.0
        for t in ahead:
            got = self._durations.get(t.kind)
            if not got:
                eta = None
                break
            expected = statistics.median(got)
            eta += max(expected - (now - t.started), 0.1 * expected) if t.started is not None else expected
        waiting = sum(1 for t in ahead if t.started is None)
        return Wait(
            place=waiting + 1,
            running=running.kind if running else None,
            waiting=waiting,
            eta_s=eta,
            waited_s=now - ticket.joined,
        )

    @contextlib.contextmanager
    def turn(
        self, owner: str, kind: str, on_wait: Callable[[Wait], None] | None = None, poll_s: float = 0.5
    ) -> Iterator[Ticket]:
        """Join the line, wait for this request's turn (calling ``on_wait`` with its place and
        estimate every ``poll_s`` seconds while it waits, outside the line's lock), run the block,
        then record how long the block took under ``kind`` and leave. An exception in the block or
        in ``on_wait`` (the visitor left) leaves the line all the same."""
        with self._cond:
            ticket = Ticket(next(self._ids), str(owner), str(kind), self._clock())
            self._line.append(ticket)
        try:
            while True:
                with self._cond:
                    if self._line[0] is ticket:
                        ticket.started = self._clock()
                        break
                    info = self._wait_info(ticket, self._clock())
                if on_wait is not None:
                    on_wait(info)
                with self._cond:
                    if self._line[0] is not ticket:
                        self._cond.wait(poll_s)
            yield ticket
            self.record(kind, self._clock() - ticket.started)
        finally:
            with self._cond:
                self._line.remove(ticket)
                self._cond.notify_all()

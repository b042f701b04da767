"""The line for the shared model: first come, first served; a waiting request hears its place and
an estimate built from timed requests of the same kind; nobody is left stuck in the line."""

import threading
import time

import pytest

from editlab.core.turns import Turns, Wait


def _run_together(turns: Turns, kinds: list[str], hold_s: float, waits: dict, order: list):
    """Start one thread per kind, each joining the line in list order and holding its turn hold_s."""
    threads = []
    for i, kind in enumerate(kinds):

        def work(i=i, kind=kind):
            with turns.turn(f"visitor-{i}", kind, on_wait=lambda w: waits.setdefault(i, []).append(w), poll_s=0.01):
                order.append(i)
                time.sleep(hold_s)

        t = threading.Thread(target=work)
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while len(turns.snapshot()) < i + 1 and time.monotonic() < deadline:  # joined, in this order
            time.sleep(0.001)
    for t in threads:
        t.join(10)
    return threads


def test_requests_take_their_turns_in_the_order_they_came():
    turns, waits, order = Turns(), {}, []
    _run_together(turns, ["edit rome"] * 4, 0.05, waits, order)
    assert order == [0, 1, 2, 3]
    assert turns.snapshot() == []
    assert 0 not in waits  # the first never waited
    # each waiter's first report: its place behind the running one and those waiting before it
    assert [waits[i][0].place for i in (1, 2, 3)] == [1, 2, 3]
    assert [waits[i][0].running for i in (1, 2, 3)] == ["edit rome"] * 3
    assert [waits[i][-1].place for i in (1, 2, 3)] == [1, 1, 1]  # moved up to next before its turn


def test_the_estimate_is_unknown_until_a_request_of_the_kind_ahead_was_timed():
    now = [100.0]
    turns = Turns(clock=lambda: now[0])
    with turns.turn("a", "edit rome"):
        inside = turns.snapshot()
        assert [t.owner for t in inside] == ["a"] and inside[0].started == 100.0
        b = _join(turns, "b", "probe")
        assert turns._wait_info(b, now[0]).eta_s is None  # nothing of kind "edit rome" timed yet
        turns._line.remove(b)
        now[0] = 110.0
    assert turns.expected("edit rome") == 10.0 and turns.expected("probe") is None


def _join(turns: Turns, owner: str, kind: str):
    from editlab.core.turns import Ticket

    with turns._cond:
        t = Ticket(999, owner, kind, turns._clock())
        turns._line.append(t)
    return t


def test_the_estimate_adds_the_running_requests_time_left_and_each_waiting_ones_median():
    now = [0.0]
    turns = Turns(clock=lambda: now[0])
    for s in (8.0, 10.0, 30.0):
        turns.record("edit rome", s)  # median 10
    turns.record("probe", 4.0)
    running = _join(turns, "a", "edit rome")
    running.started = 0.0
    queued = _join(turns, "b", "probe")
    me = _join(turns, "c", "edit rome")
    now[0] = 3.0
    w = turns._wait_info(me, now[0])
    assert (w.place, w.running, w.waiting) == (2, "edit rome", 1)
    assert w.eta_s == pytest.approx((10.0 - 3.0) + 4.0)
    now[0] = 25.0  # the running one overran its median: it still counts a tenth of it, never a negative time
    assert turns._wait_info(me, now[0]).eta_s == pytest.approx(1.0 + 4.0)
    assert "2nd" in w.line() and "an edit (rome) running" in w.line() and "about 11 s" in w.line()
    assert queued in turns._line


def test_a_failed_request_or_a_visitor_who_left_leaves_the_line():
    turns = Turns()
    with pytest.raises(RuntimeError):
        with turns.turn("a", "edit rome"):
            raise RuntimeError("the edit failed")
    assert turns.snapshot() == [] and turns.expected("edit rome") is None  # a failure is not timed

    gate = threading.Event()
    holder_in = threading.Event()

    def hold():
        with turns.turn("a", "edit rome"):
            holder_in.set()
            gate.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    holder_in.wait(5)

    def leave(w: Wait):
        raise KeyboardInterrupt  # Streamlit stops a script run of a visitor who navigated away by raising

    with pytest.raises(KeyboardInterrupt):
        with turns.turn("b", "probe", on_wait=leave, poll_s=0.01):
            pass
    assert [x.owner for x in turns.snapshot()] == ["a"]
    gate.set()
    t.join(5)
    assert turns.snapshot() == []

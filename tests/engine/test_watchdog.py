"""engine.watchdog: stops Python that runs past its deadline, wherever it loops, but only in the watched
code (a stop raised inside a garbage-collector callback would be swallowed)."""

from __future__ import annotations

import sys
import time

import pytest

from engine.config import CancelToken
from engine.watchdog import Stop, Watchdog

LOOP = compile("n = 0\nwhile True:\n    n += 1\n", "<watched>", "exec")  # no call at all in the loop


def test_a_loop_without_calls_is_stopped_when_its_lines_are_traced() -> None:
    started = time.perf_counter()
    with pytest.raises(Stop), Watchdog(0.05, trace_lines_of="<watched>") as dog:
        exec(LOOP, {})
    assert dog.reason == "timeout" and time.perf_counter() - started < 1.0


def test_a_loop_of_builtin_calls_is_stopped_with_c_calls() -> None:
    items: list[int] = []
    with pytest.raises(Stop), Watchdog(0.05, c_calls=True) as dog:
        while True:
            items.append(1)
    assert dog.reason == "timeout"


def test_cancel_stops_it_too() -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Stop), Watchdog(60, cancel, trace_lines_of="<watched>") as dog:
        exec(LOOP, {})
    assert dog.reason == "cancelled"


def test_it_stops_only_in_the_watched_code() -> None:
    def foreign() -> int:  # stands in for a callback of another library, run while the watchdog is on
        return sum(len(str(i)) for i in range(2000))

    with pytest.raises(Stop), Watchdog(0.0, c_calls=True, stop_in=("<watched>",)) as dog:
        foreign()  # expired at once, but not stopped here
        assert dog.reason == "timeout"
        exec(LOOP, {})  # stopped at the first call from the watched code
    assert sys.getprofile() is None


def test_it_puts_the_previous_tracer_back() -> None:
    def tracer(frame: object, event: str, arg: object) -> None:
        return None

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        with Watchdog(1.0):
            pass
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(old)
